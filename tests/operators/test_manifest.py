import json
import subprocess
import sys

import pytest

from operators.errors import OutputError
from operators.manifest import OutputStore, RunLock, committed_files


def entry(key, path="/in/a.parquet"):
    return {"key": key, "path": path, "identity": "{}", "files": {"tokens": f"tokens/part-{key}.parquet"}}


def test_commit_is_listed_and_removal_takes_files_first(tmp_path):
    store = OutputStore(str(tmp_path))
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "part-k1.parquet").write_bytes(b"x")
    store.commit(entry("k1"))
    assert set(store.committed()) == {"k1"}
    assert committed_files(str(tmp_path), "tokens") == [f"{tmp_path}/tokens/part-k1.parquet"]
    assert not list((tmp_path / "_manifest" / "units").glob("*.tmp-*"))
    store.remove_unit("k1")
    assert store.committed() == {} and not (tmp_path / "tokens" / "part-k1.parquet").exists()


def test_orphans_and_temporary_files_are_removed(tmp_path):
    store = OutputStore(str(tmp_path))
    (tmp_path / "tokens").mkdir()
    for name in ("part-keep.parquet", "part-gone.parquet", "part-keep.parquet.tmp-123"):
        (tmp_path / "tokens" / name).write_bytes(b"x")
    removed = store.remove_orphans(keep={"keep"})
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == ["part-gone.parquet", "part-keep.parquet.tmp-123"]
    assert [p.name for p in (tmp_path / "tokens").iterdir()] == ["part-keep.parquet"]


def test_other_model_is_refused(tmp_path):
    store = OutputStore(str(tmp_path))
    store.save_fingerprint({"schema_version": "1", "model": "a-1", "pooling": "mean"})
    store.check_fingerprint({"schema_version": "1", "model": "a-1", "pooling": "mean"})
    with pytest.raises(OutputError, match="model: 'a-1' there, 'b-2' now.*--overwrite"):
        store.check_fingerprint({"schema_version": "1", "model": "b-2", "pooling": "mean"})


def test_lock_excludes_a_second_run_until_released(tmp_path):
    store = OutputStore(str(tmp_path))
    first = RunLock(store, "run-1")
    first.acquire()
    with pytest.raises(OutputError, match="locked by run run-1.*--break-lock"):
        RunLock(store, "run-2").acquire()
    first.release()
    second = RunLock(store, "run-2")
    second.acquire()
    second.release()
    assert not (tmp_path / "_lock").exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store = OutputStore(str(tmp_path))
    holder = {"run_id": "dead-run", "host": __import__("socket").gethostname(), "pid": int(dead.stdout), "heartbeat": 0}
    (tmp_path / "_lock").write_text(json.dumps(holder))
    lock = RunLock(store, "run-2")
    lock.acquire()
    assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "run-2"
    lock.release()


def test_break_lock_takes_a_live_lock(tmp_path):
    store = OutputStore(str(tmp_path))
    alive = RunLock(store, "alive")
    alive.acquire()  # held by this very process: alive
    lock = RunLock(store, "forced")
    lock.acquire(break_lock=True)
    assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "forced"
    alive.release()  # stops its heartbeat; does not remove a lock it no longer holds
    assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "forced"
    lock.release()


def test_outputs_made_before_the_precision_option_read_as_fp32(tmp_path):
    from operators.config import AnnotateConfig

    store = OutputStore(str(tmp_path / "out"))
    store.save_fingerprint({"schema_version": "1", "model": "a-1", "pooling": "mean"})  # no "precision" key
    fp32 = AnnotateConfig(input="-", output="-").fingerprint("a-1", "1")
    assert "precision" not in fp32  # so fp32 unit keys stay what they were
    store.check_fingerprint(fp32)
    with pytest.raises(OutputError):
        store.check_fingerprint(AnnotateConfig(input="-", output="-", precision="bf16").fingerprint("a-1", "1"))
    store.save_fingerprint({"schema_version": "1", "model": "a-1", "pooling": "mean", "precision": "bf16"})
    with pytest.raises(OutputError):
        store.check_fingerprint(fp32)

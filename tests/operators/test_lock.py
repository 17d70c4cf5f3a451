"""The run lock: one writer per OUTPUT, a fence for a writer that lost it, each staleness rule."""

import json
import socket
import subprocess
import sys
import time

import pytest

from operators.errors import OutputError
from operators.lock import LockLost, RunLock
from operators.storage import PreconditionFailed, Storage


def record(tmp_path):
    return json.loads((tmp_path / "_corpus_nlp" / "lock").read_text())


def write_holder(storage, **holder):
    storage.write_json(storage.path("_corpus_nlp", "lock"), holder)


def dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_second_run_is_refused_until_the_first_releases(tmp_path):
    storage = Storage(str(tmp_path))
    first = RunLock(storage, "run-1")
    first.acquire()
    with pytest.raises(OutputError, match="locked by run run-1.*--break-lock"):
        RunLock(storage, "run-2").acquire()
    first.release()
    assert not (tmp_path / "_corpus_nlp" / "lock").exists()
    second = RunLock(storage, "run-2")
    second.acquire()
    assert record(tmp_path)["run_id"] == "run-2"
    second.release()


def test_stale_by_dead_process_on_this_host(tmp_path):
    storage = Storage(str(tmp_path))
    write_holder(storage, run_id="dead", host=socket.gethostname(), pid=dead_pid(), heartbeat=time.time())
    lock = RunLock(storage, "run-2")
    lock.acquire()  # a fresh heartbeat, but the process is gone
    assert record(tmp_path)["run_id"] == "run-2"
    lock.release()


def test_stale_by_old_heartbeat_on_another_host(tmp_path):
    storage = Storage(str(tmp_path))
    write_holder(storage, run_id="far", host="another-host", pid=1, heartbeat=time.time() - 601)
    lock = RunLock(storage, "run-2")
    lock.acquire()
    assert record(tmp_path)["run_id"] == "run-2"
    lock.release()
    write_holder(storage, run_id="far", host="another-host", pid=1, heartbeat=time.time() - 590)
    with pytest.raises(OutputError, match="locked by run far"):  # 10 minutes not yet passed
        RunLock(storage, "run-3").acquire()


def test_a_process_of_another_user_is_judged_by_its_heartbeat(tmp_path, monkeypatch):
    import os

    def not_permitted(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_permitted)
    storage = Storage(str(tmp_path))
    write_holder(storage, run_id="other-user", host=socket.gethostname(), pid=12345, heartbeat=time.time() - 601)
    lock = RunLock(storage, "run-2")
    lock.acquire()  # the process exists but its heartbeat is stale
    assert record(tmp_path)["run_id"] == "run-2"
    lock.release()
    write_holder(storage, run_id="other-user", host=socket.gethostname(), pid=12345, heartbeat=time.time())
    with pytest.raises(OutputError, match="locked by run other-user"):
        RunLock(storage, "run-3").acquire()


def test_a_run_that_lost_its_lock_is_fenced_and_never_refreshes_the_new_holder(tmp_path):
    storage = Storage(str(tmp_path))
    old = RunLock(storage, "old", heartbeat_s=0.05)
    old.acquire()
    old.check()  # holds it
    new = RunLock(storage, "new")
    new.acquire(break_lock=True)
    time.sleep(0.3)  # several of the old run's heartbeats
    assert record(tmp_path)["run_id"] == "new"  # the old heartbeat did not write over it
    with pytest.raises(LockLost, match="lost OUTPUT's lock.*now held by run new"):
        old.check()
    old.release()  # leaves the new holder's lock alone
    assert record(tmp_path)["run_id"] == "new"
    new.check()
    new.release()


def test_the_heartbeat_refreshes_the_lock_it_holds(tmp_path):
    storage = Storage(str(tmp_path))
    lock = RunLock(storage, "run", heartbeat_s=0.05)
    lock.acquire()
    first = record(tmp_path)["heartbeat"]
    time.sleep(0.3)
    assert record(tmp_path)["heartbeat"] > first
    lock.check()
    lock.release()


def test_on_s3_break_lock_takes_over_a_holder_that_beats_in_between(s3, monkeypatch):
    """On S3 every heartbeat gives the lock a new ETag. One lands between the taker's look and its
    conditional PUT: the taker looks again and takes the lock over; the holder is fenced."""
    storage = Storage(f"{s3}/out")
    holder = RunLock(storage, "run-1", heartbeat_s=3600)
    holder.acquire()
    take_over, beats = storage.take_over, []

    def beat_first(path, data, version):
        if not beats:  # the holder's heartbeat, just before the taker's first compare-and-swap
            holder.version = storage.replace_if(path, holder.record(), holder.version)
            beats.append(holder.version)
        return take_over(path, data, version)

    monkeypatch.setattr(storage, "take_over", beat_first)
    taker = RunLock(storage, "taker")
    taker.acquire(break_lock=True)
    assert len(beats) == 1 and json.loads(storage.read_bytes(storage.path("_corpus_nlp", "lock")))["run_id"] == "taker"
    with pytest.raises(PreconditionFailed):  # the holder's next heartbeat finds the lock changed
        storage.replace_if(storage.path("_corpus_nlp", "lock"), holder.record(), holder.version)
    taker.release()
    holder._stop.set()


def test_on_s3_a_check_during_its_own_heartbeat_is_not_a_lost_lock(s3, monkeypatch):
    """The heartbeat's conditional PUT has landed (a new ETag) and its answer is not back yet when
    a commit checks the fence: the check waits for the heartbeat instead of calling the lock lost."""
    import threading

    storage = Storage(f"{s3}/out")
    replace_if, landed = storage.replace_if, threading.Event()

    def slow_answer(path, data, expected):
        version = replace_if(path, data, expected)
        landed.set()
        time.sleep(0.3)
        return version

    monkeypatch.setattr(storage, "replace_if", slow_answer)
    lock = RunLock(storage, "run-1", heartbeat_s=0.05)
    lock.acquire()
    assert landed.wait(5)
    lock.check()  # does not raise LockLost
    lock.release()


def test_on_s3_two_runs_cannot_both_hold_the_lock(s3):
    storage = Storage(f"{s3}/out")
    first = RunLock(storage, "run-1", heartbeat_s=0.05)
    first.acquire()
    with pytest.raises(OutputError, match="locked by run run-1"):
        RunLock(storage, "run-2").acquire()
    time.sleep(0.3)  # heartbeats are conditional PUTs on S3
    first.check()
    taker = RunLock(storage, "taker")
    taker.acquire(break_lock=True)
    time.sleep(0.3)
    with pytest.raises(LockLost):
        first.check()
    assert json.loads(storage.read_bytes(storage.path("_corpus_nlp", "lock")))["run_id"] == "taker"
    first.release()
    taker.release()
    assert storage.read_bytes(storage.path("_corpus_nlp", "lock")) is None

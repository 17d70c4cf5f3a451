"""A real Ray head on loopback; annotate and nightly submitted with `ray job submit`, as documented."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from tests.conftest import SAMPLE_TEXTS
from tests.jobs.test_nightly import make_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head():
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled"}
    gcs, dashboard = free_port(), free_port()
    start = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--ray-client-server-port={free_port()}", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"]
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, timeout=180)
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        # `ray stop` would stop every Ray on the machine: end only this head's processes
        for proc in psutil.process_iter(["cmdline"]):
            if temp in " ".join(proc.info["cmdline"] or []):
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(temp, ignore_errors=True)


def submit(address, env, *args, timeout=600):
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT), "--", "python", "-m", *args]
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        # Ray refuses submissions with this until the head's job agent has registered, which on a
        # busy machine can come after `ray start` returns (seen once, with a second Ray running)
        if "No available agent to submit job" not in result.stdout + result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(2)


def test_annotate_and_nightly_jobs_through_ray_job_submit(tmp_path, head, tok2vec_pipeline_dir):
    address, env = head
    ids = make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS, "a")
    out = tmp_path / "out"
    first = submit(address, env, "jobs.annotate", str(tmp_path / "in"), str(out), "--model", tok2vec_pipeline_dir, "--unit-rows", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "succeeded" in first.stdout
    docs = pl.scan_parquet(f"{out}/documents/**/*.parquet").collect()
    assert sorted(docs["doc_id"].to_list()) == sorted(ids) and set(docs["status"]) == {"ok"}

    ids += make_file(tmp_path / "in", "b.parquet", ["A new file arrived.", "With two texts."], "b")
    night = submit(address, env, "jobs.nightly", str(tmp_path / "in"), str(out), "--model", tok2vec_pipeline_dir, "--unit-rows", "2")
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    assert "1 done, 2 already done" in night.stdout
    docs = pl.scan_parquet(f"{out}/documents/**/*.parquet").collect()
    assert sorted(docs["doc_id"].to_list()) == sorted(ids)
    assert pl.scan_parquet(f"{out}/tokens/**/*.parquet").collect().height == docs["n_tokens"].sum()

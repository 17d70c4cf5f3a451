"""A real Ray head on loopback with token authentication; annotate and nightly submitted with
`ray job submit` and the token, as documented; submissions without the token or with a wrong one
refused by the head, before any job is made."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import psutil
import pytest

from operators import query
from tests.conftest import SAMPLE_TEXTS
from tests.jobs.helpers import make_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_token(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in AUTH_VARS}


@pytest.fixture
def head():
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        # the token as the docs make it (`ray get-auth-token --generate` writes ~/.ray/auth_token), in
        # a HOME of its own: the user's ~/.ray/auth_token is neither read nor written
        home = Path(temp) / "home"
        made = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=without_token(os.environ) | {"HOME": str(home)},
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        token_file = home / ".ray" / "auth_token"
        token = token_file.read_text()
        assert made.stdout.strip() == token and len(token) >= 32
        # head and clients read it through RAY_AUTH_TOKEN_PATH
        env = without_token(os.environ) | {"PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
                                           "RAY_AUTH_TOKEN_PATH": str(token_file)}
        gcs, dashboard = free_port(), free_port()
        start = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
                 "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                 f"--ray-client-server-port={free_port()}", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"]
        started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield f"http://127.0.0.1:{dashboard}", env, token
    finally:
        # `ray stop` would stop every Ray on the machine: end only this head's processes, with their
        # children (the raylet's agents name themselves ray::..., without the temp dir)
        ours = {proc.pid: proc for proc in psutil.process_iter(["cmdline"]) if temp in " ".join(proc.info["cmdline"] or [])}
        for proc in list(ours.values()):
            try:
                ours |= {child.pid: child for child in proc.children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
        for proc in ours.values():
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


def job_api(address: str, headers: dict[str, str]) -> tuple[int, str]:
    """GET the job API's job list: (HTTP status, body). Waits up to 120 s for the dashboard to listen."""
    request = urllib.request.Request(f"{address}/api/jobs/", headers=headers)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_annotate_and_nightly_jobs_through_ray_job_submit(tmp_path, head, tok2vec_pipeline_dir):
    address, env, token = head
    ids = make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS, "a")
    out = tmp_path / "out"

    # the job API itself: no token 401, a wrong one 403, the head's token lets the request through
    assert job_api(address, {}) == (401, "Unauthorized: Missing authentication token")
    assert job_api(address, {"Authorization": "Bearer not-the-token"}) == (403, "Forbidden: Invalid authentication token")
    status, body = job_api(address, {"Authorization": f"Bearer {token}"})
    assert (status, json.loads(body)) == (200, [])

    # `ray job submit` without the token, and with a wrong one: refused by the head, no job made
    refused = tmp_path / "refused"
    no_token = without_token(env) | {"HOME": str(tmp_path)}  # a client with no token anywhere
    wrong = env | {"RAY_AUTH_TOKEN": "not-the-token"}  # RAY_AUTH_TOKEN comes before the token file
    for client, answer in [(no_token, "Unauthorized: Missing authentication token"), (wrong, "Forbidden: Invalid authentication token")]:
        result = submit(address, client, "jobs.annotate", str(tmp_path / "in"), str(refused), "--model", tok2vec_pipeline_dir)
        assert result.returncode != 0
        assert answer in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-3000:]
    status, body = job_api(address, {"Authorization": f"Bearer {token}"})
    assert (status, json.loads(body)) == (200, []) and not refused.exists()

    first = submit(address, env, "jobs.annotate", str(tmp_path / "in"), str(out), "--model", tok2vec_pipeline_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "succeeded" in first.stdout
    docs = query.scan(str(out), "documents").collect()
    assert sorted(docs["doc_id"].to_list()) == sorted(ids) and set(docs["status"]) == {"ok"}

    ids += make_file(tmp_path / "in", "b.parquet", ["A new file arrived.", "With two texts."], "b")
    night = submit(address, env, "jobs.nightly", str(tmp_path / "in"), str(out), "--model", tok2vec_pipeline_dir)
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    assert "1 new, 0 changed, 0 removed" in night.stdout
    docs = query.scan(str(out), "documents").collect()
    assert sorted(docs["doc_id"].to_list()) == sorted(ids)
    assert query.scan(str(out), "tokens").collect().height == docs["n_tokens"].sum()

    status, body = job_api(address, {"Authorization": f"Bearer {token}"})
    assert status == 200 and sorted(job["status"] for job in json.loads(body)) == ["SUCCEEDED", "SUCCEEDED"]

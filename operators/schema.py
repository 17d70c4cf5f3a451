"""The output tables: one place that says what OUTPUT's four Delta tables hold.

docs/schema.md describes the same tables for people; tests/operators/test_schema.py keeps the two
in step. Bump SCHEMA_VERSION whenever a column is added, removed, renamed or changes meaning.

Every table starts with `doc_id` and `source` (the input file), so a changed or removed input
file's rows can be deleted from each table by `source`. The annotator nests a document's rows
under it (annotated_schema, sentence vectors as fixed-size lists); the writer flattens them into
the tables, whose vectors are plain lists because Delta has no fixed-size list type.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"
TABLES = ("documents", "tokens", "entities", "sentences")

# Keys of the metadata in every data file (Parquet key-value metadata) and in each Delta table's configuration.
META_SCHEMA_VERSION = "corpus_nlp.schema_version"
META_MODEL = "corpus_nlp.model"
META_VECTOR_WIDTH = "corpus_nlp.vector_width"
META_POOLING = "corpus_nlp.pooling"
META_PRECISION = "corpus_nlp.precision"

STATUS_OK = "ok"
STATUS_ERROR = "error"


def documents_schema(id_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            pa.field("doc_id", id_type),
            pa.field("source", pa.string()),
            pa.field("n_chars", pa.int64(), nullable=False),
            pa.field("n_tokens", pa.int64(), nullable=False),
            pa.field("n_words", pa.int64(), nullable=False),  # tokens that are not whitespace
            pa.field("n_sents", pa.int64(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("error", pa.string()),
            pa.field("model", pa.string(), nullable=False),
        ]
    )


# Per-document annotation rows, without doc_id: the annotator nests them under each document and
# the writer flattens them into their own tables with doc_id in front.
TOKEN_FIELDS = [
    pa.field("sent_idx", pa.int32(), nullable=False),
    pa.field("tok_idx", pa.int32(), nullable=False),
    pa.field("start_char", pa.int64(), nullable=False),
    pa.field("end_char", pa.int64(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("tag", pa.string()),
    pa.field("pos", pa.string()),
    pa.field("lemma", pa.string()),
    pa.field("dep", pa.string()),
    pa.field("head", pa.int32()),
    pa.field("ent_iob", pa.string()),
    pa.field("ent_type", pa.string()),
]
ENTITY_FIELDS = [
    pa.field("ent_idx", pa.int32(), nullable=False),
    pa.field("sent_idx", pa.int32(), nullable=False),
    pa.field("start_char", pa.int64(), nullable=False),
    pa.field("end_char", pa.int64(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
]


def sentence_fields(vector_width: int | None) -> list[pa.Field]:
    """vector_width None: the output's plain list of float32 (Delta has no fixed-size list)."""
    vector = pa.list_(pa.float32()) if vector_width is None else pa.list_(pa.float32(), vector_width)
    return [
        pa.field("sent_idx", pa.int32(), nullable=False),
        pa.field("start_char", pa.int64(), nullable=False),
        pa.field("end_char", pa.int64(), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        # null where the sentence has no embedding rows to pool (a curated transformer gives
        # whitespace-only sentences no pieces)
        pa.field("vector", vector),
    ]


def _keyed(id_type: pa.DataType, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema([pa.field("doc_id", id_type), pa.field("source", pa.string()), *fields])


def table_schema(table: str, id_type: pa.DataType) -> pa.Schema:
    """The Delta (and Parquet) schema of an output table."""
    if table == "documents":
        return documents_schema(id_type)
    if table == "tokens":
        return _keyed(id_type, TOKEN_FIELDS)
    if table == "entities":
        return _keyed(id_type, ENTITY_FIELDS)
    if table == "sentences":
        return _keyed(id_type, sentence_fields(None))
    raise KeyError(f"unknown table {table!r}; the tables are {', '.join(TABLES)}")


def annotated_schema(id_type: pa.DataType, vector_width: int) -> pa.Schema:
    """What the annotator returns: one row per input document, its annotations nested."""
    return pa.schema(
        [
            *documents_schema(id_type),
            pa.field("tokens", pa.list_(pa.struct(TOKEN_FIELDS)), nullable=False),
            pa.field("entities", pa.list_(pa.struct(ENTITY_FIELDS)), nullable=False),
            pa.field("sentences", pa.list_(pa.struct(sentence_fields(vector_width))), nullable=False),
        ]
    )


def file_metadata(model: str, vector_width: int, pooling: str, precision: str = "fp32") -> dict[str, str]:
    """What every data file and each table's Delta metadata record about how it was made."""
    return {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_MODEL: model,
        META_VECTOR_WIDTH: str(vector_width),
        META_POOLING: pooling,
        META_PRECISION: precision,
    }


# corpus-nlp's own state, not read by users

# one row per unit an actor finished: the block an actor returns to the driver
UNIT_STATS_SCHEMA = pa.schema(
    [
        pa.field("unit", pa.string()),  # JSON of the unit (operators.units.unit_to_dict) and its planned unit
        pa.field("status", pa.string()),  # ok | failed (the unit is then not committed)
        pa.field("error", pa.string()),
        pa.field("files", pa.string()),  # JSON: [DataFile.to_dict()], the unit's data files
        pa.field("documents", pa.int64()),
        pa.field("errors", pa.int64()),
        pa.field("tokens", pa.int64()),
        pa.field("words", pa.int64()),
        pa.field("sentences", pa.int64()),
        pa.field("entities", pa.int64()),
        pa.field("first_error", pa.string()),
        pa.field("vector_width", pa.int64()),
        pa.field("forward_seconds", pa.float64()),  # of the unit's annotation: the transformer's forward passes
        pa.field("host_seconds", pa.float64()),  # and everything else the pipeline did (the rest is reading and writing)
        pa.field("seconds", pa.float64()),
        pa.field("started", pa.float64()),  # wall clock (epoch seconds) when the actor took the unit up
        pa.field("worker", pa.string()),  # JSON: where the unit ran (host, pid, node's raylet, GPU)
    ]
)

# OUTPUT/_corpus_nlp/units, a Delta table: one row per committed unit, the commit point of exactly-once
UNITS_SCHEMA = pa.schema(
    [
        pa.field("unit", pa.string(), nullable=False),
        pa.field("round", pa.int64(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("identity", pa.string(), nullable=False),
        pa.field("row_start", pa.int64(), nullable=False),
        pa.field("row_end", pa.int64(), nullable=False),
        pa.field("committed", pa.string(), nullable=False),
    ]
)

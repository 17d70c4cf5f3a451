"""Flatten annotated batches into the four tables and write them as Parquet, never half-written.

Each batch becomes one file per table, `OUTPUT/<table>/part-<key>.parquet`, where `key` derives
from the batch's (source, doc_id) pairs. A file is written under a `.tmp-` name first and then
renamed, so a reader globbing `*.parquet` never sees a partial file.
"""

from __future__ import annotations

import hashlib
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import schema

NESTED = ("tokens", "entities", "sentences")
STATS_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.string()),
        pa.field("documents", pa.int64()),
        pa.field("errors", pa.int64()),
        pa.field("tokens", pa.int64()),
        pa.field("words", pa.int64()),
        pa.field("sentences", pa.int64()),
        pa.field("entities", pa.int64()),
        pa.field("first_error", pa.string()),
    ]
)


def split_annotated(batch: pa.Table) -> dict[str, pa.Table]:
    """The four output tables of an annotated batch, each with doc_id first."""
    doc_cols = [f.name for f in schema.documents_schema(batch.schema.field("doc_id").type)]
    tables = {"documents": batch.select(doc_cols)}
    doc_ids = batch.column("doc_id").combine_chunks()
    for name in NESTED:
        lists = batch.column(name).combine_chunks()
        rows = pc.list_flatten(lists)
        children = rows.flatten() if len(rows) else [pa.array([], f.type) for f in rows.type]
        fields = [pa.field("doc_id", doc_ids.type), *rows.type]
        tables[name] = pa.Table.from_arrays(
            [doc_ids.take(pc.list_parent_indices(lists)), *children], schema=pa.schema(fields)
        )
    return tables


def shard_key(batch: pa.Table) -> str:
    h = hashlib.sha256()
    for source, doc_id in zip(batch.column("source").to_pylist(), batch.column("doc_id").to_pylist()):
        h.update(f"{source}\x1f{doc_id!r}\x1e".encode())
    return h.hexdigest()[:20]


def vector_width(batch: pa.Table) -> int:
    return batch.schema.field("sentences").type.value_type.field("vector").type.list_size


def output_filesystem(output: str) -> tuple[pafs.FileSystem, str]:
    if "://" in output:
        fs, root = pafs.FileSystem.from_uri(output)
    else:
        fs, root = pafs.LocalFileSystem(), output
    return fs, root.rstrip("/")


def prepare_output(output: str) -> None:
    """Create OUTPUT/<table>/ for every table (once, on the driver)."""
    fs, root = output_filesystem(output)
    for table in schema.TABLES:
        fs.create_dir(f"{root}/{table}", recursive=True)


def write_shard(batch: pa.Table, output: str, pooling: str) -> pa.Table:
    """Ray Data task form of ShardWriter."""
    return ShardWriter(output, pooling)(batch)


class ShardWriter:
    """`ShardWriter(output, pooling)(annotated batch) -> one stats row`; OUTPUT must be prepared."""

    def __init__(self, output: str, pooling: str):
        self.fs, self.root = output_filesystem(output)
        self.pooling = pooling

    def __call__(self, batch: pa.Table) -> pa.Table:
        if batch.num_rows == 0:
            return STATS_SCHEMA.empty_table()
        key = shard_key(batch)
        model = batch.column("model")[0].as_py()
        metadata = schema.file_metadata(model, vector_width(batch), self.pooling)
        tables = split_annotated(batch)
        for name, table in tables.items():
            self._write_atomic(f"{self.root}/{name}/part-{key}.parquet", table.replace_schema_metadata(metadata))
        docs = tables["documents"]
        errors = pc.equal(docs.column("status"), schema.STATUS_ERROR)
        first_error = pc.filter(docs.column("error"), errors)
        return pa.table(
            {
                "shard": [key],
                "documents": [docs.num_rows],
                "errors": [pc.sum(errors).as_py() or 0],
                "tokens": [pc.sum(docs.column("n_tokens")).as_py() or 0],
                "words": [pc.sum(docs.column("n_words")).as_py() or 0],
                "sentences": [tables["sentences"].num_rows],
                "entities": [tables["entities"].num_rows],
                "first_error": [first_error[0].as_py() if len(first_error) else None],
            },
            schema=STATS_SCHEMA,
        )

    def _write_atomic(self, path: str, table: pa.Table) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        pq.write_table(table, tmp, filesystem=self.fs, compression="zstd")
        self.fs.move(tmp, path)

"""Flatten annotated batches into the four tables and write one unit's files, never half-written.

A unit's rows go to `OUTPUT/<table>/part-<unit key>.parquet`, one file per table, streamed batch
by batch (memory is bounded by a batch, not by the unit) under a temporary name that does not end
in `.parquet`, and renamed when the unit is complete. A retried unit writes the same names, so it
replaces its own files.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import schema

NESTED = ("tokens", "entities", "sentences")


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


def unit_relpaths(key: str) -> dict[str, str]:
    """Where a unit's four files live, relative to OUTPUT."""
    return {table: f"{table}/part-{key}.parquet" for table in schema.TABLES}


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


def vector_width(batch: pa.Table) -> int:
    return batch.schema.field("sentences").type.value_type.field("vector").type.list_size


class UnitWriter:
    """`write(annotated batch)` as often as needed, then `commit()` (or `abort()`)."""

    def __init__(self, output: str, key: str, pooling: str, precision: str = "fp32"):
        self.fs, self.root = output_filesystem(output)
        self.relpaths = unit_relpaths(key)
        self.pooling, self.precision = pooling, precision
        self.tmp = {t: f"{self.root}/{rel}.tmp-{uuid.uuid4().hex}" for t, rel in self.relpaths.items()}
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.stats = {"documents": 0, "errors": 0, "tokens": 0, "words": 0, "sentences": 0, "entities": 0}
        self.first_error: str | None = None

    def write(self, annotated: pa.Table) -> None:
        if annotated.num_rows == 0:
            return
        tables = split_annotated(annotated)
        if not self.writers:
            model = annotated.column("model")[0].as_py()
            metadata = schema.file_metadata(model, vector_width(annotated), self.pooling, self.precision)
            for name, table in tables.items():
                self.writers[name] = pq.ParquetWriter(
                    self.tmp[name], table.schema.with_metadata(metadata), filesystem=self.fs, compression="zstd"
                )
        for name, table in tables.items():
            self.writers[name].write_table(table)
        docs = tables["documents"]
        failed = pc.equal(docs.column("status"), schema.STATUS_ERROR)
        self.stats["documents"] += docs.num_rows
        self.stats["errors"] += pc.sum(failed).as_py() or 0
        self.stats["tokens"] += pc.sum(docs.column("n_tokens")).as_py() or 0
        self.stats["words"] += pc.sum(docs.column("n_words")).as_py() or 0
        self.stats["sentences"] += tables["sentences"].num_rows
        self.stats["entities"] += tables["entities"].num_rows
        if self.first_error is None and self.stats["errors"]:
            self.first_error = pc.filter(docs.column("error"), failed)[0].as_py()

    def commit(self) -> dict[str, str]:
        """Close and rename; the unit's files (relative to OUTPUT), none if it had no rows."""
        for writer in self.writers.values():
            writer.close()
        for name in self.writers:
            self.fs.move(self.tmp[name], f"{self.root}/{self.relpaths[name]}")
        return {name: self.relpaths[name] for name in self.writers}

    def abort(self) -> None:
        for name, writer in self.writers.items():
            writer.close()
            try:
                self.fs.delete_file(self.tmp[name])
            except FileNotFoundError:
                pass

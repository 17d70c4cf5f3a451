"""Flatten annotated batches into the four tables and write one unit's data files.

A unit's rows go to one new Parquet file per table, `OUTPUT/<table>/part-<unit key>-<attempt>.parquet`,
streamed batch by batch (memory is bounded by a batch, not by the unit). The files are invisible
to every reader until the driver commits them to the Delta tables; a retried unit writes under a
new attempt, and the attempt that is not committed is removed by VACUUM. On a local disk each file
is fsynced (file, then folder) before the writer reports it, so a commit never names a file that a
power loss could truncate.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema
from .storage import Storage

NESTED = ("tokens", "entities", "sentences")
STATS_COLUMNS = ("doc_id", "source")  # min/max in each file's Delta stats: deletes by source skip files


@dataclass(frozen=True)
class DataFile:
    """One written file, as a Delta add action needs it (path relative to its table)."""

    table: str
    path: str
    size: int
    rows: int
    modification_time: int  # ms since the epoch
    stats: str  # Delta's per-file statistics (JSON)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_annotated(batch: pa.Table) -> dict[str, pa.Table]:
    """The four output tables of an annotated batch, each with doc_id and source first."""
    id_type = batch.schema.field("doc_id").type
    tables = {"documents": batch.select(schema.documents_schema(id_type).names)}
    keys = batch.select(["doc_id", "source"]).combine_chunks()
    for name in NESTED:
        lists = batch.column(name).combine_chunks()
        rows = pc.list_flatten(lists)
        children = rows.flatten() if len(rows) else [pa.array([], f.type) for f in rows.type]
        parents = pc.list_parent_indices(lists)
        columns = [keys.column(0).take(parents), keys.column(1).take(parents), *children]
        table = pa.Table.from_arrays(columns, names=["doc_id", "source", *[f.name for f in rows.type]])
        tables[name] = table.cast(schema.table_schema(name, id_type))  # sentence vectors: fixed -> plain list
    return tables


def vector_width(batch: pa.Table) -> int:
    return batch.schema.field("sentences").type.value_type.field("vector").type.list_size


class UnitWriter:
    """`write(annotated batch)` as often as needed, then `finish()` (or `abort()`)."""

    def __init__(self, output: str, key: str, pooling: str, precision: str = "fp32"):
        self.storage = Storage(output)
        attempt = uuid.uuid4().hex[:8]
        self.names = {t: f"part-{key}-{attempt}.parquet" for t in schema.TABLES}
        self.pooling, self.precision = pooling, precision
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.handles: dict[str, Any] = {}
        self.rows = dict.fromkeys(schema.TABLES, 0)
        self.ranges: dict[str, dict[str, list]] = {t: {} for t in schema.TABLES}
        self.stats = {"documents": 0, "errors": 0, "tokens": 0, "words": 0, "sentences": 0, "entities": 0}
        self.first_error: str | None = None
        self.vector_width = 0

    def write(self, annotated: pa.Table) -> None:
        if annotated.num_rows == 0:
            return
        tables = split_annotated(annotated)
        if not self.writers:
            model = annotated.column("model")[0].as_py()
            self.vector_width = vector_width(annotated)
            metadata = schema.file_metadata(model, self.vector_width, self.pooling, self.precision)
            for name, table in tables.items():
                path = self.storage.path(name, self.names[name])
                self.handles[name] = self.storage.open_output(path)
                self.writers[name] = pq.ParquetWriter(self.handles[name], table.schema.with_metadata(metadata), compression="zstd")
        for name, table in tables.items():
            self.writers[name].write_table(table)
            self.rows[name] += table.num_rows
            self._track_ranges(name, table)
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

    def _track_ranges(self, name: str, table: pa.Table) -> None:
        for column in STATS_COLUMNS:
            values = table.column(column)
            if table.num_rows == 0 or pa.types.is_binary(values.type):
                continue
            low, high = pc.min_max(values).values()
            nulls = values.null_count
            seen = self.ranges[name].setdefault(column, [None, None, 0])
            if low.is_valid:
                seen[0] = low.as_py() if seen[0] is None else min(seen[0], low.as_py())
                seen[1] = high.as_py() if seen[1] is None else max(seen[1], high.as_py())
            seen[2] += nulls

    def finish(self) -> list[DataFile]:
        """Close the files and make them durable; what the driver commits (none without rows)."""
        files = []
        for name, writer in self.writers.items():
            writer.close()
            path = self.storage.path(name, self.names[name])
            self.storage.finish_output(self.handles[name], path)
            info = self.storage.fs.info(path)
            files.append(DataFile(name, self.names[name], int(info["size"]), self.rows[name], _mtime_ms(info), self._stats(name)))
        return files

    def _stats(self, name: str) -> str:
        ranges = self.ranges[name]
        stats: dict[str, Any] = {"numRecords": self.rows[name]}
        if ranges:
            stats["minValues"] = {c: r[0] for c, r in ranges.items() if r[0] is not None}
            stats["maxValues"] = {c: r[1] for c, r in ranges.items() if r[1] is not None}
            stats["nullCount"] = {c: r[2] for c, r in ranges.items()}
        return json.dumps(stats, default=str)

    def abort(self) -> None:
        for name, writer in self.writers.items():
            writer.close()
            self.handles[name].close()
            self.storage.delete(self.storage.path(name, self.names[name]))


def _mtime_ms(info: dict[str, Any]) -> int:
    import time

    mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
    if hasattr(mtime, "timestamp"):
        return int(mtime.timestamp() * 1000)
    return int(float(mtime) * 1000) if mtime else int(time.time() * 1000)

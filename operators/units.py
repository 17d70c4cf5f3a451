"""Input units: the granularity of work, retries and commits.

A unit is a run of consecutive row groups of one input file (at most `unit_rows` rows, at least
one row group). Its key derives from the file's identity (path, size, modification time or etag),
its row groups and the run's fingerprint (model, schema version, options that change the output),
so a unit's output files have the same names however often it is retried or re-run, and a
changed file or a changed configuration gives new keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import errors

TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)


@dataclass(frozen=True)
class InputUnit:
    key: str
    path: str  # as given to fsspec (keeps its scheme)
    identity: str  # JSON of the file's identity
    row_groups: tuple[int, ...]
    first_row: int  # row of the file where the unit starts
    n_rows: int

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["row_groups"] = list(self.row_groups)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> InputUnit:
        return cls(**{**row, "row_groups": tuple(int(r) for r in row["row_groups"])})


@dataclass
class UnitPlan:
    units: list[InputUnit]
    bad_files: dict[str, str]  # path -> why it could not be read
    id_type: pa.DataType
    text_type: pa.DataType


def file_identity(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    info = fs.info(path)
    identity: dict[str, Any] = {"path": fs.unstrip_protocol(path), "size": info.get("size")}
    for key in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(key):
            identity["etag"] = str(info[key]).strip('"')
            break
    else:
        mtime = info.get("mtime", info.get("LastModified", info.get("updated")))
        identity["mtime"] = mtime.isoformat() if hasattr(mtime, "isoformat") else mtime
    return identity


def unit_key(identity: str, row_groups: tuple[int, ...], fingerprint: str) -> str:
    h = hashlib.sha256()
    h.update(identity.encode())
    h.update(json.dumps(list(row_groups)).encode())
    h.update(fingerprint.encode())
    return h.hexdigest()[:24]


def plan_units(
    files: list[str], text_column: str, id_column: str, fingerprint: str, unit_rows: int
) -> UnitPlan:
    """Read every file's footer (not its data): check columns and types, cut row groups into units.

    A file that cannot be read is listed in bad_files. Missing columns, a non-text text column, or
    columns whose types differ between files are errors before any work.
    """
    units: list[InputUnit] = []
    bad: dict[str, str] = {}
    seen: dict[str, tuple[pa.DataType, str]] = {}
    for url in files:
        fs, path = fsspec.core.url_to_fs(url)
        try:
            identity = json.dumps(file_identity(fs, path), sort_keys=True, default=str)
            with fs.open(path, "rb") as handle:
                meta = pq.ParquetFile(handle).metadata
                file_schema = meta.schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            bad[url] = f"{type(exc).__name__}: {exc}"
            continue
        missing = [c for c in (text_column, id_column) if c not in file_schema.names]
        if missing:
            raise errors.missing_columns(missing, file_schema.names, url)
        text_type = file_schema.field(text_column).type
        if not any(check(text_type) for check in TEXT_TYPES):
            raise errors.bad_text_type(text_column, text_type)
        for column in (id_column, text_column):
            type_ = file_schema.field(column).type
            if column in seen and seen[column][0] != type_:
                raise errors.schema_drift(column, seen[column], (type_, url))
            seen.setdefault(column, (type_, url))
        units.extend(_cut(url, identity, meta, fingerprint, unit_rows))
    if not seen:
        raise errors.InputError(
            "none of the input files could be read: " + "; ".join(f"{p}: {why}" for p, why in bad.items())
        )
    return UnitPlan(units, bad, seen[id_column][0], seen[text_column][0])


def _cut(url: str, identity: str, meta: pq.FileMetaData, fingerprint: str, unit_rows: int) -> list[InputUnit]:
    units = []
    group: list[int] = []
    rows = first = offset = 0
    for rg in range(meta.num_row_groups):
        n = meta.row_group(rg).num_rows
        if group and rows + n > unit_rows:
            units.append(InputUnit(unit_key(identity, tuple(group), fingerprint), url, identity, tuple(group), first, rows))
            group, rows, first = [], 0, offset
        group.append(rg)
        rows += n
        offset += n
    if group:
        units.append(InputUnit(unit_key(identity, tuple(group), fingerprint), url, identity, tuple(group), first, rows))
    return units


def read_unit(unit: InputUnit, columns: list[str], batch_size: int):
    """Stream a unit's rows (only `columns`) as Arrow record batches of at most batch_size rows."""
    fs, path = fsspec.core.url_to_fs(unit.path)
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=False)
        for group in unit.row_groups:  # one at a time: asking for all buffers them all
            yield from parquet.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns)

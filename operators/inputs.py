"""Find the input Parquet files and read what planning needs from their footers (never their data).

Files come as their writers made them: one huge row group (polars, DuckDB), thousands of tiny
files (Spark), 128-row groups (pyarrow with a small row_group_size). Planning sees each file as a
list of row groups with their row counts and an estimate of their text bytes (the text column
chunk's uncompressed size), which is all that cutting the work by text size needs.

Column types are normalized so that files written by different tools can be one corpus: text
becomes large_string; a string-like id becomes string, an integer id int64, a binary id binary.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import errors

GLOB_CHARS = set("*?[")
FOOTER_THREADS = 16  # footers are small reads: on an object store, latency, not bandwidth, bounds them

TEXT_TYPE = pa.large_string()
BINARY_TEXT_TYPE = pa.large_binary()  # text stored as bytes: decoded as UTF-8 per document
_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
_BINARIES = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)


@dataclass(frozen=True)
class RowGroup:
    rows: int
    text_bytes: int  # uncompressed size of the text column chunk: the estimate units are cut by
    stored_bytes: int  # compressed size of the two columns read: what reading it costs


@dataclass(frozen=True)
class InputFile:  # frozen, hashable by its fields; `starts` is computed once
    path: str  # as given to fsspec (keeps its scheme)
    identity: str  # JSON of path, size and modification time or ETag: a changed file has another
    row_groups: tuple[RowGroup, ...]

    @property
    def rows(self) -> int:
        return self.starts[-1]

    @functools.cached_property
    def starts(self) -> tuple[int, ...]:
        """The first row of each row group, then the file's row count."""
        return (0, *itertools.accumulate(g.rows for g in self.row_groups))

    @property
    def text_bytes(self) -> int:
        return sum(g.text_bytes for g in self.row_groups)


@dataclass
class Corpus:
    files: list[InputFile]
    bad_files: dict[str, str]  # path -> why it could not be read
    id_type: pa.DataType  # normalized (id_arrow_type)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def discover(input_: str) -> list[tuple[str, dict[str, Any]]]:
    """Parquet files named by a file, a folder (searched recursively) or a glob, with their listing
    info (size, mtime or ETag); URLs keep their scheme."""
    fs, path = fsspec.core.url_to_fs(input_)
    fs.invalidate_cache()  # an object store's listing may be cached from an earlier run in this process
    if GLOB_CHARS & set(path):
        found = fs.glob(path, detail=True)
    elif fs.isdir(path):
        found = {p: i for p, i in fs.find(path, detail=True).items() if p.endswith(".parquet")}
    elif fs.exists(path):
        found = {path: fs.info(path)}
    else:
        found = {}
    files = sorted((p, info) for p, info in found.items() if info.get("type") != "directory")
    if not files:
        raise errors.no_input_files(input_)
    if "://" in input_:
        return [(fs.unstrip_protocol(p), info) for p, info in files]
    return files


def file_identity(url: str, info: dict[str, Any]) -> str:
    """What makes a file the same file: its path, size, and ETag (object stores) or mtime."""
    identity: dict[str, Any] = {"path": url, "size": info.get("size")}
    for key in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(key):
            identity["etag"] = str(info[key]).strip('"')
            break
    else:
        mtime = info.get("mtime", info.get("LastModified", info.get("updated")))
        identity["mtime"] = mtime.isoformat() if hasattr(mtime, "isoformat") else mtime
    return json.dumps(identity, sort_keys=True, default=str)


def id_arrow_type(type_: pa.DataType) -> pa.DataType | None:
    """The id type written to the output for an input id column of `type_`; None: not supported."""
    if any(check(type_) for check in _STRINGS):
        return pa.string()
    if any(check(type_) for check in _BINARIES):
        return pa.binary()
    if pa.types.is_signed_integer(type_) or (pa.types.is_unsigned_integer(type_) and type_.bit_width < 64):
        return pa.int64()
    return None


def is_text_type(type_: pa.DataType) -> bool:
    return any(check(type_) for check in (*_STRINGS, *_BINARIES))


def text_kind(type_: pa.DataType) -> pa.DataType:
    """The normalized text type: strings of any kind as large_string, bytes as large_binary."""
    return TEXT_TYPE if any(check(type_) for check in _STRINGS) else BINARY_TEXT_TYPE


def read_corpus(input_: str, text_column: str, id_column: str) -> Corpus:
    """Discover the files and read every footer (in parallel): columns, types, row groups.

    A file that cannot be read is listed in bad_files. Missing columns, a text column that is not
    text, an id type with no output type, or ids of different kinds between files are errors
    before any work.
    """
    listing = discover(input_)
    with ThreadPoolExecutor(FOOTER_THREADS) as pool:
        results = list(pool.map(lambda item: _read_footer(*item, text_column, id_column), listing))
    files: list[InputFile] = []
    bad: dict[str, str] = {}
    id_type: tuple[pa.DataType, str] | None = None
    text_type: tuple[pa.DataType, str] | None = None
    for (url, _), result in zip(listing, results):
        if isinstance(result, str):
            bad[url] = result
            continue
        input_file, raw = result
        missing = [c for c in (text_column, id_column) if c not in raw.names]
        if missing:
            raise errors.missing_columns(missing, raw.names, url)
        if not is_text_type(raw.field(text_column).type):
            raise errors.bad_text_type(text_column, raw.field(text_column).type)
        kind = text_kind(raw.field(text_column).type)
        if text_type and text_type[0] != kind:
            raise errors.schema_drift(text_column, text_type, (raw.field(text_column).type, url))
        text_type = text_type or (kind, url)
        normalized = id_arrow_type(raw.field(id_column).type)
        if normalized is None:
            raise errors.bad_id_type(id_column, raw.field(id_column).type)
        if id_type and id_type[0] != normalized:
            raise errors.schema_drift(id_column, id_type, (raw.field(id_column).type, url))
        id_type = id_type or (normalized, url)
        files.append(input_file)
    if id_type is None:
        raise errors.InputError(
            "none of the input files could be read: " + "; ".join(f"{p}: {why}" for p, why in bad.items())
        )
    return Corpus(files, bad, id_type[0])


def _read_footer(url: str, info: dict[str, Any], text_column: str, id_column: str) -> tuple[InputFile, pa.Schema] | str:
    try:
        with fsspec.open(url, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
            schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    text_index = names.index(text_column) if text_column in names else None
    read = [i for i, name in enumerate(names) if name in (text_column, id_column)]
    groups = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        text = group.column(text_index).total_uncompressed_size if text_index is not None else group.num_rows
        groups.append(RowGroup(group.num_rows, text, sum(group.column(i).total_compressed_size for i in read)))
    return InputFile(url, file_identity(url, info), tuple(groups)), schema


def normalize(table: pa.Table, text_column: str, id_column: str, id_type: pa.DataType) -> pa.Table:
    """Cast a batch read from any file to the corpus's normalized id and text types."""
    cast: Callable[[str, pa.DataType], pa.ChunkedArray] = lambda name, type_: (  # noqa: E731
        table.column(name) if table.schema.field(name).type == type_ else table.column(name).cast(type_)
    )
    text = cast(text_column, text_kind(table.schema.field(text_column).type))
    return pa.table({id_column: cast(id_column, id_type), text_column: text})

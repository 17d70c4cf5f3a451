"""Find the input Parquet files and check their columns before any work starts."""

from __future__ import annotations

from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import errors

GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Inputs:
    files: list[str]  # URLs (or local paths) exactly as Ray Data should read them
    id_type: pa.DataType
    text_type: pa.DataType


def discover(input_: str) -> list[str]:
    """Parquet files named by a file, a folder (searched recursively) or a glob; URLs keep their scheme."""
    fs, path = fsspec.core.url_to_fs(input_)
    if GLOB_CHARS & set(path):
        found = sorted(fs.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    elif fs.exists(path):
        return [input_]
    else:
        found = []
    files = [p for p in found if not fs.isdir(p)]
    if not files:
        raise errors.no_input_files(input_)
    if "://" in input_:
        return [fs.unstrip_protocol(p) for p in files]
    return files


def inspect_inputs(input_: str, text_column: str, id_column: str) -> Inputs:
    files = discover(input_)
    fs, path = fsspec.core.url_to_fs(files[0])
    with fs.open(path, "rb") as handle:
        file_schema = pq.read_schema(handle)
    missing = [c for c in (text_column, id_column) if c not in file_schema.names]
    if missing:
        raise errors.missing_columns(missing, file_schema.names)
    text_type = file_schema.field(text_column).type
    if not any(
        check(text_type)
        for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    ):
        raise errors.bad_text_type(text_column, text_type)
    return Inputs(files=files, id_type=file_schema.field(id_column).type, text_type=text_type)

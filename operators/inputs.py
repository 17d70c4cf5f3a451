"""Find the input Parquet files (their columns are checked in operators/units.py)."""

from __future__ import annotations

import fsspec

from . import errors

GLOB_CHARS = set("*?[")


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

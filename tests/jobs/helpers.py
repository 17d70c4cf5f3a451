"""Shared by the job tests: small corpora and whole-output comparisons."""

from __future__ import annotations

import polars as pl

from operators.schema import TABLES

SORT = {
    "documents": ["doc_id"],
    "tokens": ["doc_id", "tok_idx"],
    "entities": ["doc_id", "ent_idx"],
    "sentences": ["doc_id", "sent_idx"],
}


def read_output(out) -> dict[str, pl.DataFrame]:
    """Every table, sorted, without the column that names the input file."""
    frames = {}
    for table in TABLES:
        frame = pl.scan_parquet(f"{out}/{table}/**/*.parquet").collect().sort(SORT[table])
        frames[table] = frame.drop("source") if table == "documents" else frame
    return frames


def assert_same_output(a, b) -> None:
    fa, fb = read_output(a), read_output(b)
    for table in TABLES:
        assert fa[table].equals(fb[table]), table


def assert_each_document_once(out, ids) -> None:
    docs = pl.scan_parquet(f"{out}/documents/**/*.parquet").collect()
    assert sorted(docs["doc_id"].to_list()) == sorted(ids)
    for table, keys in SORT.items():
        frame = pl.scan_parquet(f"{out}/{table}/**/*.parquet").collect()
        assert frame.select(keys).is_duplicated().sum() == 0, table

"""Polars over an OUTPUT: each table, and the questions people ask of them, as LazyFrames.

    from operators import query
    query.top_entities("out/demo", label="ORG").collect()

Every table is read at OUTPUT's consistent snapshot (operators/output.py): the table versions
recorded after the last commit round, so a query that joins tables never sees one round's tokens
without its documents, also while a run commits. Nothing reads more than the query needs: every
function returns a LazyFrame over `pl.scan_delta`, and polars pushes filters and projections down.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from deltalake.exceptions import TableNotFoundError

from .output import Output  # noqa: F401  (query.Output: the tables of an OUTPUT)
from .schema import TABLES

NO_OUTPUT = (TableNotFoundError, FileNotFoundError)  # no table there (yet)


def versions(output: str) -> dict[str, int] | None:
    """The table versions of OUTPUT's consistent snapshot (None before the first commit)."""
    snapshot = Output(output).snapshot()
    return snapshot["versions"] if snapshot else None


def scan(output: str, table: str, *, version: int | None = None, latest: bool = False) -> pl.LazyFrame:
    """One table: at the consistent snapshot; at `version` (Delta time travel); or, with `latest`,
    at whatever version it has now (which may hold a round's documents before its tokens)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; the tables are {', '.join(TABLES)}")
    if version is None and not latest:
        version = (versions(output) or {}).get(table)
    return pl.scan_delta(Output(output).table_url(table), version=version)


def sentence_vectors(output: str, **scan_options: Any) -> pl.LazyFrame:
    """The sentences table with `vector` as a fixed-width array (pl.Array): the tables store a
    plain list, since Delta has no fixed-size list type."""
    width = int((Output(output).fingerprint() or {}).get("vector_width") or 0)
    frame = scan(output, "sentences", **scan_options)
    return frame.with_columns(pl.col("vector").list.to_array(width)) if width else frame


def runs(output: str) -> pl.DataFrame:
    """Every run's report, oldest first: when it ran, what it did, and the table versions it left
    (pass one to `scan(..., version=...)` to read OUTPUT as that run left it)."""
    storage = Output(output).storage
    rows = []
    for path in storage.list_files("_reports"):
        if path.endswith(".json"):
            report = json.loads(storage.read_bytes(path) or b"{}")
            versions_left = (report.get("snapshot") or {}).get("versions") or {}
            rows.append({"run_id": report.get("run_id"), "started": report.get("started"), "status": report.get("status"),
                         "documents": report.get("documents"), **{f"{t}_version": versions_left.get(t) for t in TABLES}})
    return pl.DataFrame(rows).sort("started") if rows else pl.DataFrame()


def changes(output: str, since_version: int) -> pl.LazyFrame:
    """Documents rows added or removed since a documents version (a run's `documents_version` in
    `runs()`): `change` is "added" or "removed". A document of a changed input file whose text
    changed shows its old row removed and its new row added; its unchanged documents do not show."""
    now = scan(output, "documents")
    before = scan(output, "documents", version=since_version)
    keys = ["source", "doc_id", "n_chars", "n_tokens", "status"]
    return pl.concat([
        now.join(before, on=keys, how="anti", nulls_equal=True).with_columns(pl.lit("added").alias("change")),
        before.join(now, on=keys, how="anti", nulls_equal=True).with_columns(pl.lit("removed").alias("change")),
    ])


def documents_with_entities(output: str) -> pl.LazyFrame:
    """Every document row with a list of its entities (label, text), empty when it has none."""
    ents = (
        scan(output, "entities")
        .sort("source", "doc_id", "ent_idx")
        .group_by("source", "doc_id", maintain_order=True)
        .agg(pl.struct("label", "text", "start_char", "end_char").alias("entities"))
    )
    return (
        scan(output, "documents")
        .join(ents, on=["source", "doc_id"], how="left")
        .with_columns(pl.col("entities").fill_null(pl.lit([], dtype=pl.List(ents.collect_schema()["entities"].inner))))
    )


def top_entities(output: str, label: str | None = None, top: int = 20) -> pl.LazyFrame:
    """Most frequent (label, text) pairs, with how many documents mention each."""
    ents = scan(output, "entities")
    if label:
        ents = ents.filter(pl.col("label") == label)
    return (
        ents.group_by("label", "text")
        .agg(pl.len().alias("mentions"), pl.struct("source", "doc_id").n_unique().alias("documents"))
        .sort(["mentions", "documents", "label", "text"], descending=[True, True, False, False])
        .head(top)
    )


def label_distribution(output: str) -> pl.LazyFrame:
    """Entity labels by count, with their share of all entities."""
    return (
        scan(output, "entities")
        .group_by("label")
        .agg(pl.len().alias("count"))
        .with_columns((pl.col("count") / pl.col("count").sum()).alias("share"))
        .sort(["count", "label"], descending=[True, False])
    )


def tag_distribution(output: str, column: str = "tag") -> pl.LazyFrame:
    """Counts of a token attribute (tag, pos or dep), with shares."""
    if column not in ("tag", "pos", "dep", "ent_type"):
        raise ValueError("column must be one of tag, pos, dep, ent_type")
    return (
        scan(output, "tokens")
        .filter(pl.col(column).is_not_null())
        .group_by(column)
        .agg(pl.len().alias("count"))
        .with_columns((pl.col("count") / pl.col("count").sum()).alias("share"))
        .sort(["count", column], descending=[True, False])
    )


def cooccurrence(output: str, top: int = 20, label: str | None = None) -> pl.LazyFrame:
    """Pairs of entities mentioned in the same sentence, counted once per sentence.

    Each pair is ordered (a before b by label, then text), so (x, y) and (y, x) count together.
    """
    ents = scan(output, "entities").select("source", "doc_id", "sent_idx", "label", "text").unique()
    if label:
        ents = ents.filter(pl.col("label") == label)
    a = ents.rename({"label": "label_a", "text": "text_a"})
    b = ents.rename({"label": "label_b", "text": "text_b"})
    return (
        a.join(b, on=["source", "doc_id", "sent_idx"])
        .filter(
            (pl.col("label_a") < pl.col("label_b"))
            | ((pl.col("label_a") == pl.col("label_b")) & (pl.col("text_a") < pl.col("text_b")))
        )
        .group_by("label_a", "text_a", "label_b", "text_b")
        .agg(pl.len().alias("sentences"))
        .sort(["sentences", "label_a", "text_a", "label_b", "text_b"], descending=[True, False, False, False, False])
        .head(top)
    )


def sentence_texts(output: str, sentences: pl.LazyFrame | None = None, *, text_column: str = "text",
                   id_column: str = "id") -> pl.LazyFrame:
    """Sentences with their text, sliced by offsets from the source Parquet files.

    Only the source files the sentences come from are read, and only their id and text columns.
    """
    wanted = scan(output, "sentences") if sentences is None else sentences
    id_type = wanted.collect_schema()["doc_id"]
    files = wanted.select(pl.col("source").unique()).collect()["source"].drop_nulls().to_list()
    if not files:
        return wanted.with_columns(pl.lit(None, dtype=pl.String).alias("text"))
    texts = pl.concat(
        [
            pl.scan_parquet(f).select(pl.col(id_column).cast(id_type).alias("doc_id"), pl.col(text_column).alias("_doc_text"),
                                      pl.lit(f).alias("source"))
            for f in files
        ]
    )
    return (
        wanted.join(texts, on=["doc_id", "source"], how="left")
        .with_columns(
            pl.col("_doc_text").str.slice(pl.col("start_char"), pl.col("end_char") - pl.col("start_char")).alias("text")
        )
        .drop("_doc_text")
    )

"""Polars over an OUTPUT folder: each table, and the questions people ask of them, as LazyFrames.

    from operators import query
    query.top_entities("out/demo", label="ORG").collect()

Nothing here reads more than the query needs: every function returns a LazyFrame over
`pl.scan_parquet`, so polars pushes filters and projections down to the files.
"""

from __future__ import annotations

import polars as pl

from .manifest import committed_files
from .schema import TABLES


def scan(output: str, table: str, *, committed_only: bool = False) -> pl.LazyFrame:
    """One table. `committed_only` reads only committed units (see the README on exactly-once)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; the tables are {', '.join(TABLES)}")
    if committed_only:
        return pl.scan_parquet(committed_files(output, table))
    return pl.scan_parquet(f"{output.rstrip('/')}/{table}/**/*.parquet")


def documents_with_entities(output: str) -> pl.LazyFrame:
    """Every document row with a list of its entities (label, text), empty when it has none."""
    ents = (
        scan(output, "entities")
        .sort("doc_id", "ent_idx")
        .group_by("doc_id", maintain_order=True)
        .agg(pl.struct("label", "text", "start_char", "end_char").alias("entities"))
    )
    return (
        scan(output, "documents")
        .join(ents, on="doc_id", how="left")
        .with_columns(pl.col("entities").fill_null(pl.lit([], dtype=pl.List(ents.collect_schema()["entities"].inner))))
    )


def top_entities(output: str, label: str | None = None, top: int = 20) -> pl.LazyFrame:
    """Most frequent (label, text) pairs, with how many documents mention each."""
    ents = scan(output, "entities")
    if label:
        ents = ents.filter(pl.col("label") == label)
    return (
        ents.group_by("label", "text")
        .agg(pl.len().alias("mentions"), pl.col("doc_id").n_unique().alias("documents"))
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
    ents = scan(output, "entities").select("doc_id", "sent_idx", "label", "text").unique()
    if label:
        ents = ents.filter(pl.col("label") == label)
    a = ents.rename({"label": "label_a", "text": "text_a"})
    b = ents.rename({"label": "label_b", "text": "text_b"})
    return (
        a.join(b, on=["doc_id", "sent_idx"])
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
    sentences = scan(output, "sentences") if sentences is None else sentences
    sources = scan(output, "documents").select("doc_id", "source")
    wanted = sentences.join(sources, on="doc_id", how="left")
    files = wanted.select(pl.col("source").unique()).collect()["source"].drop_nulls().to_list()
    if not files:
        return wanted.with_columns(pl.lit(None, dtype=pl.String).alias("text"))
    texts = pl.concat(
        [
            pl.scan_parquet(f).select(pl.col(id_column).alias("doc_id"), pl.col(text_column).alias("_doc_text"),
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

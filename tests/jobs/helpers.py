"""Shared by the job tests: small corpora and whole-output comparisons, read through Delta."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from operators import query
from operators.output import Output
from operators.schema import TABLES

SORT = {
    "documents": ["doc_id"],
    "tokens": ["doc_id", "tok_idx"],
    "entities": ["doc_id", "ent_idx"],
    "sentences": ["doc_id", "sent_idx"],
}


def make_file(folder, name, texts, prefix, row_group_size=None):
    """One input file with ids `<prefix>-<i>`; as pyarrow writes it unless row_group_size is given."""
    ids = [f"{prefix}-{i}" for i in range(len(texts))]
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": texts}), folder / name, row_group_size=row_group_size)
    return ids


def unique_texts(texts, n, tag=""):
    """n texts cycling through `texts`, each made unique (a repeated text is dictionary-encoded and
    its size underestimated by the footer)."""
    return [f"{texts[i % len(texts)]} Note {tag}{i}." for i in range(n)]


def read_output(out) -> dict[str, pl.DataFrame]:
    """Every table at the consistent snapshot, sorted, without the column that names the input file."""
    return {t: query.scan(str(out), t).collect().sort(SORT[t]).drop("source") for t in TABLES}


def assert_same_output(a, b) -> None:
    fa, fb = read_output(a), read_output(b)
    for table in TABLES:
        assert fa[table].equals(fb[table]), table


def assert_each_document_once(out, ids) -> None:
    docs = query.scan(str(out), "documents").collect()
    assert sorted(docs["doc_id"].to_list()) == sorted(ids)
    for table, keys in SORT.items():
        frame = query.scan(str(out), table).collect()
        assert frame.height > 0, table
        assert frame.select(keys).is_duplicated().sum() == 0, table
    tokens = query.scan(str(out), "tokens").group_by("doc_id").len().collect()
    joined = docs.join(tokens, on="doc_id", how="left").with_columns(pl.col("len").fill_null(0))
    assert (joined["len"] == joined["n_tokens"]).all()  # every document's tokens, no more, no fewer


def committed_units(out) -> int:
    """Units OUTPUT has committed (0 before the first commit)."""
    return Output(str(out)).committed().units if (out / "_corpus_nlp").exists() else 0

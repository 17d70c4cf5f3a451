"""`corpus-nlp search OUTPUT "query text" -k 10`: nearest sentences by cosine."""

from __future__ import annotations

from typing import Annotated

import polars as pl
import typer

from jobs.query import Format, emit
from operators import query
from operators.search import embed_query, nearest, output_model


def command(
    output: Annotated[str, typer.Argument(help="An OUTPUT folder of corpus-nlp annotate")],
    text: Annotated[str, typer.Argument(help="What to look for")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many sentences")] = 10,
    model: Annotated[str | None, typer.Option(help="Pipeline to embed the query; default: the one OUTPUT was made with")] = None,
    pooling: Annotated[str, typer.Option(help="Must match the run's --pooling")] = "mean",
    format: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    """Embed TEXT with OUTPUT's pipeline and print the k nearest sentences, with their text."""
    hits = pl.from_arrow(nearest(output, embed_query(text, model or output_model(output), pooling), k=k))
    with_text = query.sentence_texts(output, hits.lazy()).collect()
    ordered = with_text.sort("score", descending=True).select("score", "doc_id", "sent_idx", "start_char", "end_char", "text")
    emit(ordered, format, title=f"nearest sentences to {text!r}")

"""`corpus-nlp query OUTPUT WHAT`: canned polars queries over an output folder."""

from __future__ import annotations

import enum
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from operators import query


class What(str, enum.Enum):
    entities = "entities"
    labels = "labels"
    tags = "tags"
    cooccurrence = "cooccurrence"
    documents = "documents"


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


def emit(frame: pl.DataFrame, fmt: Format, title: str | None = None) -> None:
    if fmt is Format.csv:
        typer.echo(frame.write_csv(), nl=False)
    elif fmt is Format.json:
        typer.echo(frame.write_json())
    else:
        table = Table(title=title)
        for name in frame.columns:
            table.add_column(name, justify="right" if frame.schema[name].is_numeric() else "left")
        for row in frame.iter_rows():
            table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        Console().print(table)


def command(
    output: Annotated[str, typer.Argument(help="An OUTPUT folder of corpus-nlp annotate")],
    what: Annotated[What, typer.Argument(help="entities | labels | tags | cooccurrence | documents")],
    label: Annotated[str | None, typer.Option(help="Only this entity label (entities, cooccurrence)")] = None,
    column: Annotated[str, typer.Option(help="Token attribute for `tags`: tag, pos, dep or ent_type")] = "tag",
    top: Annotated[int, typer.Option(help="Rows to show")] = 20,
    format: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    """Top entities, label or tag distributions, entity co-occurrence in sentences, documents."""
    if what is What.entities:
        frame = query.top_entities(output, label=label, top=top)
    elif what is What.labels:
        frame = query.label_distribution(output).head(top)
    elif what is What.tags:
        frame = query.tag_distribution(output, column).head(top)
    elif what is What.cooccurrence:
        frame = query.cooccurrence(output, top=top, label=label)
    else:
        frame = (
            query.documents_with_entities(output)
            .select("doc_id", "status", "n_tokens", "n_sents", pl.col("entities").list.len().alias("n_entities"), "error")
            .sort("n_entities", descending=True)
            .head(top)
        )
    emit(frame.collect(), format, title=f"{what.value} in {output}")

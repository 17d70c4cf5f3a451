"""The `corpus-nlp` command: one Typer app, one sub-command per job."""

from __future__ import annotations

import typer

from jobs import annotate, bench, evaluate, query, search, train_default

app = typer.Typer(
    name="corpus-nlp",
    help="Bulk spaCy annotation of Parquet corpora on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("annotate")(annotate.command)
app.command("nightly")(annotate.nightly_command)
app.command("evaluate")(evaluate.command)
app.command("query")(query.command)
app.command("search")(search.command)
app.command("bench")(bench.command)
app.command("train-default")(train_default.command)
app.command("assemble-default")(train_default.assemble_command)


@app.callback()
def main() -> None:
    """Bulk spaCy annotation of Parquet corpora on Ray."""


if __name__ == "__main__":
    app()

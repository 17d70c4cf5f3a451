"""`corpus-nlp evaluate`: score a pipeline run through corpus-nlp against plain `nlp.pipe`.

Both see the same raw texts of gold_dev.jsonl and are scored by character span with one scorer
(operators/scoring.py), so the difference is what corpus-nlp's preparation and segmenting cost.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from jobs.annotate import run
from operators import query
from operators.config import DEFAULT_MODEL, RunConfig
from operators.scoring import Predicted, predicted_from_doc, read_gold, score

DEFAULT_GOLD = "../shared/data/ewt/gold_dev.jsonl"


def corpus_nlp_predictions(output: str) -> dict[str, Predicted]:
    tokens = query.scan(output, "tokens").select("doc_id", "start_char", "end_char", "tag").collect()
    ents = query.scan(output, "entities").select("doc_id", "start_char", "end_char", "label").collect()
    sents = query.scan(output, "sentences").select("doc_id", "start_char").collect()
    grouped = {
        name: {k[0]: frame.drop("doc_id").rows() for k, frame in df.group_by("doc_id")}
        for name, df in (("tokens", tokens), ("ents", ents), ("sents", sents))
    }
    ids = set(grouped["tokens"]) | set(grouped["sents"])
    return {
        doc_id: Predicted(
            tokens=grouped["tokens"].get(doc_id, []),
            ents=grouped["ents"].get(doc_id, []),
            sent_starts=[s for (s,) in grouped["sents"].get(doc_id, [])],
        )
        for doc_id in ids
    }


def heldout(gold: list) -> list:
    """The gold_dev documents the default pipeline never trained on nor selected with."""
    from jobs.train_default import DEV_SHARES
    from operators.training import split_of

    return [d for d in gold if split_of(d.id, DEV_SHARES) == "test"]


def evaluate(gold_path: str, model: str, workdir: str, actors: int | None = None, only_heldout: bool = False) -> dict:
    gold = read_gold(gold_path)
    if only_heldout:
        gold = heldout(gold)
    corpus = Path(workdir) / "input.parquet"
    pq.write_table(pa.table({"id": [d.id for d in gold], "text": [d.text for d in gold]}), corpus)
    summary = run(RunConfig(input=str(corpus), output=str(Path(workdir) / "output"), model=model, actors=actors))
    ours = score(gold, corpus_nlp_predictions(str(Path(workdir) / "output")))

    import spacy

    from operators.default_model import resolve

    nlp = spacy.load(resolve(model))
    start = time.perf_counter()
    plain_docs = {d.id: predicted_from_doc(doc) for d, doc in zip(gold, nlp.pipe([d.text for d in gold]))}
    plain_seconds = time.perf_counter() - start
    plain = score(gold, plain_docs)
    return {
        "gold": gold_path,
        "documents": len(gold),
        "heldout_only": only_heldout,
        "model": model,
        "corpus_nlp": {**ours.as_dict(), "errors": summary.errors, "seconds": round(summary.seconds, 1)},
        "nlp_pipe": {**plain.as_dict(), "seconds": round(plain_seconds, 1)},
        "tag_accuracy_difference_points": round(100 * (ours.tag_accuracy - plain.tag_accuracy), 3),
    }


def command(
    gold: Annotated[str, typer.Argument(help="gold_dev.jsonl-style file: raw texts with gold char spans")] = DEFAULT_GOLD,
    model: Annotated[str, typer.Option(help="spaCy pipeline to evaluate")] = DEFAULT_MODEL,
    report: Annotated[str | None, typer.Option(help="Also write the scores as JSON here")] = None,
    actors: Annotated[int | None, typer.Option(help="Pipeline actors for the corpus-nlp run")] = None,
    heldout: Annotated[bool, typer.Option(help="Only the gold_dev documents the default pipeline did not train on (its test split)")] = False,
) -> None:
    """Score corpus-nlp (through Ray) and plain nlp.pipe of the same model on the same gold texts."""
    with tempfile.TemporaryDirectory() as workdir:
        result = evaluate(gold, model, workdir, actors, heldout)
    table = Table(title=f"{model} on {result['documents']} documents of {gold}")
    for column in ("", "tag acc", "ent P", "ent R", "ent F1", "sent F1", "seconds"):
        table.add_column(column)
    for name in ("corpus_nlp", "nlp_pipe"):
        r = result[name]
        table.add_row(name, *(f"{r[k]:.4f}" for k in ("tag_accuracy", "ent_precision", "ent_recall", "ent_f1", "sent_f1")), f"{r['seconds']}")
    Console().print(table)
    Console().print(f"tag accuracy difference: {result['tag_accuracy_difference_points']:+.3f} points")
    if report:
        Path(report).write_text(json.dumps(result, indent=2) + "\n")

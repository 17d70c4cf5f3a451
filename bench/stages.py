"""Seconds per stage of one actor's work, without a profiler's overhead: tokenizer, each pipeline
component, pooling + extraction, Arrow table. Same Annotator as a Ray actor, no Ray, no Parquet.

    python bench/stages.py --shape bert-base --no-parser --device gpu --words 100000 [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from jobs.bench import DEFAULT_DOCS, build_shaped_pipeline, load_texts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="corpus_nlp_minilm")
    parser.add_argument("--shape", default=None)
    parser.add_argument("--no-parser", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--words", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--docs", default=DEFAULT_DOCS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from operators.annotate import Annotator
    from operators.config import AnnotateConfig
    from operators.doc_arrays import make_docs
    from operators.extract import DocumentResult, annotate_segment, build_annotated_table

    def sync() -> None:
        if args.device == "gpu":
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        model = build_shaped_pipeline(Path(tmp), args.shape, not args.no_parser) if args.shape else args.model
        annotator = Annotator(AnnotateConfig(input="-", output="-", model=model, batch_size=args.batch_size,
                                             precision=args.precision), use_gpu=args.device == "gpu")
    pipeline = annotator.pipeline
    nlp = pipeline.nlp
    texts = load_texts(args.docs, args.words)
    words = sum(len(t.split()) for t in texts)
    annotator(pa.table({"id": [0], "text": [texts[0]]}))  # warm-up
    seconds: dict[str, float] = defaultdict(float)
    start_all = time.perf_counter()
    for i in range(0, len(texts), args.batch_size):
        chunk = texts[i: i + args.batch_size]
        t = time.perf_counter()
        docs = make_docs(nlp, chunk)
        seconds["tokenizer"] += time.perf_counter() - t
        for name, proc in nlp.pipeline:
            t = time.perf_counter()
            docs = list(proc.pipe(docs, batch_size=len(docs))) if hasattr(proc, "pipe") else [proc(d) for d in docs]
            sync()
            seconds[name] += time.perf_counter() - t
        t = time.perf_counter()
        segments = [annotate_segment(pipeline, doc, 0, "mean") for doc in docs]
        seconds["pooling + extraction"] += time.perf_counter() - t
        t = time.perf_counter()
        results = [DocumentResult(n_chars=len(text), segments=[s]) for text, s in zip(chunk, segments)]
        build_annotated_table(pa.array(range(len(chunk))), pa.nulls(len(chunk), pa.string()), results, pipeline)
        seconds["arrow table"] += time.perf_counter() - t
    total = time.perf_counter() - start_all
    report = {"model": args.shape or args.model, "device": args.device, "precision": args.precision, "words": words,
              "words_per_s": round(words / total), "us_per_word": {k: round(v / words * 1e6, 2) for k, v in seconds.items()}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

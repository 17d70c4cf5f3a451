"""What one pipeline actor spends its time on: an in-process `Annotator` over EWT text, profiled.

    python bench/profile_actor.py --shape bert-base --no-parser --device gpu --words 100000 [--precision bf16]
    python bench/profile_actor.py --model corpus_nlp_minilm --words 20000

Runs the same `Annotator` a Ray actor runs (no Ray, no Parquet), first unprofiled for words/s, then
under cProfile, and prints the functions with the most cumulative and own time. Used for the
performance log (bench/PERFLOG.md): on a GPU the transformer is cheap and this shows the host work.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from jobs.bench import DEFAULT_DOCS, build_shaped_pipeline, load_texts  # noqa: E402


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
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as in a Ray actor with one CPU
    from operators.annotate import Annotator
    from operators.config import AnnotateConfig

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
        words = sum(len(t.split()) for t in texts)

        def once() -> float:
            start = time.perf_counter()
            for i in range(0, len(texts), args.batch_size):
                annotator(table.slice(i, args.batch_size))
            return time.perf_counter() - start

        seconds = once()
        result = {"model": args.shape or args.model, "device": args.device, "precision": args.precision,
                  "batch_size": args.batch_size, "words": words, "load_s": round(load_s, 1),
                  "seconds": round(seconds, 2), "words_per_s": round(words / seconds, 1)}
        if args.device == "gpu":
            result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        print(json.dumps(result))
        if args.no_profile:
            return
        profile = cProfile.Profile()
        profile.enable()
        once()
        profile.disable()
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

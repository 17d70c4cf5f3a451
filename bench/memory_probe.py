"""Does one pipeline actor's memory grow with the corpus? An in-process `Annotator` over EWT text.

    python bench/memory_probe.py --model corpus_nlp_minilm --words 600000 [--every 20] [--threads 1] [--batch-chars N]

The same `Annotator` a Ray actor runs (no Ray, no Parquet), fed `--batch-size` documents at a time.
Every `--every` batches it prints a JSON line: words so far, the process's resident memory now and
its peak so far (MiB, from /proc), and the strings in the pipeline's vocab. Flat memory shows as a
resident size that stops rising once the first batches have passed; growth shows as a trend.
With --per-batch the peak is reset before every batch (/proc/self/clear_refs) and each batch's own
peak is printed with its characters and longest text: what a batch's size costs.
With --random-words the texts are made-up lowercase words instead of EWT (about 300 words per text,
none seen before): an open vocabulary, where the vocab grows until `--keep-strings` and the memory
zones then keep it there.
Linux only (reads /proc/self/status). Used for bench/PERFLOG.md.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from jobs.bench import DEFAULT_DOCS, load_texts  # noqa: E402


def memory_mib() -> tuple[int, int]:
    """(resident now, peak resident) of this process in MiB."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def random_texts(words: int, per_text: int = 300) -> list[str]:
    """Texts of made-up lowercase words (4-11 letters, a sentence every 15 words), fixed seed."""
    rng = random.Random(0)
    texts = []
    for _ in range(0, words, per_text):
        sentences = (" ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 11))) for _ in range(15))
                     for _ in range(per_text // 15))
        texts.append(" ".join(sentence.capitalize() + "." for sentence in sentences))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="corpus_nlp_minilm")
    parser.add_argument("--words", type=int, default=600_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-chars", type=int, default=None, help="characters per nlp.pipe batch (default: as `annotate`)")
    parser.add_argument("--every", type=int, default=20, help="print every N batches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--docs", default=DEFAULT_DOCS)
    parser.add_argument("--per-batch", action="store_true", help="each batch's own peak (resets the peak before it)")
    parser.add_argument("--random-words", action="store_true", help="texts of made-up words (an open vocabulary) instead of EWT")
    parser.add_argument("--keep-strings", type=int, default=None, help="as `annotate --keep-strings` (default: its default)")
    args = parser.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from operators.annotate import Annotator
    from operators.config import AnnotateConfig

    keep = {} if args.keep_strings is None else {"keep_strings": args.keep_strings}
    annotator = Annotator(AnnotateConfig(input="-", output="-", model=args.model, batch_size=args.batch_size,
                                         batch_chars=args.batch_chars, **keep))
    texts = random_texts(args.words) if args.random_words else load_texts(args.docs, args.words)
    words, start = 0, time.perf_counter()
    for k, i in enumerate(range(0, len(texts), args.batch_size)):
        chunk = texts[i : i + args.batch_size]
        if args.per_batch:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")  # resets VmHWM to the current resident size
            before = memory_mib()[0]
        annotator(pa.table({"id": list(range(i, i + len(chunk))), "text": chunk}))
        words += sum(len(t.split()) for t in chunk)
        rss, peak = memory_mib()
        if args.per_batch:
            line = {"batch": k, "chars": sum(map(len, chunk)), "longest": max(map(len, chunk)),
                    "rss_before_mib": before, "batch_peak_mib": peak, "rss_after_mib": rss}
        elif k % args.every == 0 or i + args.batch_size >= len(texts):
            line = {"batch": k, "words": words, "rss_mib": rss, "peak_mib": peak,
                    "vocab_strings": len(annotator.pipeline.nlp.vocab.strings),
                    "seconds": round(time.perf_counter() - start, 1)}
        else:
            continue
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

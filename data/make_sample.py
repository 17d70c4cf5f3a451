"""Rebuild data/ewt_sample.parquet from ../shared/data/ewt/docs.jsonl (UD English EWT, CC BY-SA 4.0).

    python data/make_sample.py [--source ../shared/data/ewt/docs.jsonl] [--n 60]

Takes the first N documents of each genre in file order, so the sample covers all five genres.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(HERE.parent.parent / "shared" / "data" / "ewt" / "docs.jsonl"))
    parser.add_argument("--n", type=int, default=60, help="documents in the sample")
    parser.add_argument("--out", default=str(HERE / "ewt_sample.parquet"))
    args = parser.parse_args()
    by_genre: dict[str, list[dict]] = defaultdict(list)
    with open(args.source, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            by_genre[row["genre"]].append(row)
    per_genre = args.n // len(by_genre)
    rows = [r for genre in sorted(by_genre) for r in by_genre[genre][:per_genre]]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "genre": [r["genre"] for r in rows],
            "text": [r["text"] for r in rows],
        }
    )
    pq.write_table(table, args.out, compression="zstd", row_group_size=12)
    print(f"wrote {len(rows)} documents ({sum(len(r['text']) for r in rows):,} chars) to {args.out}")


if __name__ == "__main__":
    main()

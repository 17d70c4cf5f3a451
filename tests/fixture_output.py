"""A small OUTPUT written by hand with the real schema (Delta tables and a snapshot), so query
answers are known exactly."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

from operators.output import Output
from operators.schema import table_schema

TEXTS = {
    "d1": "Alice met Bob in Paris. Alice works at Acme.",
    "d2": "Bob visited Paris. Acme hired Carol.",
    "d3": None,
}
# (doc, ent_idx, sent_idx, start, end, label)
ENTITIES = [
    ("d1", 0, 0, 0, 5, "PER"), ("d1", 1, 0, 10, 13, "PER"), ("d1", 2, 0, 17, 22, "LOC"),
    ("d1", 3, 1, 24, 29, "PER"), ("d1", 4, 1, 39, 43, "ORG"),
    ("d2", 0, 0, 0, 3, "PER"), ("d2", 1, 0, 12, 17, "LOC"), ("d2", 2, 1, 19, 23, "ORG"), ("d2", 3, 1, 30, 35, "PER"),
]
SENTENCES = [("d1", 0, 0, 23), ("d1", 1, 24, 44), ("d2", 0, 0, 18), ("d2", 1, 19, 36)]


def write_fixture_output(root) -> str:
    source = root / "input.parquet"
    pq.write_table(pa.table({"id": list(TEXTS), "text": list(TEXTS.values())}), source)
    out = root / "out"
    output = Output(str(out))
    output.create_tables(pa.string())
    output.save_fingerprint({"model": "en_test-0.0.1", "model_name": "en_test", "vector_width": 4})

    def write(table, rows):
        rows = [{"source": str(source), **row} for row in rows]
        write_deltalake(output.table_url(table), pa.Table.from_pylist(rows, schema=table_schema(table, pa.string())), mode="append")

    write("documents", [
        {"doc_id": d, "n_chars": len(t or ""), "n_tokens": 0 if t is None else 10,
         "n_words": 0 if t is None else 8, "n_sents": 0 if t is None else 2,
         "status": "error" if t is None else "ok", "error": "text is null" if t is None else None, "model": "en_test-0.0.1"}
        for d, t in TEXTS.items()
    ])
    write("entities", [
        {"doc_id": d, "ent_idx": i, "sent_idx": s, "start_char": a, "end_char": b, "label": label, "text": TEXTS[d][a:b]}
        for d, i, s, a, b, label in ENTITIES
    ])
    tags = ["NNP", "VBD", "NNP", "IN", "NNP", "."]
    write("tokens", [
        {"doc_id": "d1", "sent_idx": 0, "tok_idx": i, "start_char": i, "end_char": i + 1, "text": "x", "tag": tag,
         "pos": "PROPN" if tag == "NNP" else "X", "lemma": "x", "dep": "dep", "head": 0, "ent_iob": "O", "ent_type": None}
        for i, tag in enumerate(tags)
    ])
    write("sentences", [
        {"doc_id": d, "sent_idx": s, "start_char": a, "end_char": b, "n_tokens": 5, "vector": [float(k), 1.0, 0.0, 0.0]}
        for k, (d, s, a, b) in enumerate(SENTENCES)
    ])
    output.write_snapshot(1)
    return str(out)

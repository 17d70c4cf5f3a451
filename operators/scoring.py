"""Score annotations against gold character spans (../shared/data/ewt/gold_dev.jsonl format).

A gold token counts as correctly tagged when a predicted token has exactly its (start, end) and
its tag; entities count by exact (start, end, label) after mapping labels to PER/ORG/LOC;
sentences by their start offsets (whitespace-trimmed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# OntoNotes (en_core_web_*) labels -> the gold PER/ORG/LOC scheme; others are not scored
ENTITY_LABELS = {"PERSON": "PER", "PER": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC"}


@dataclass
class GoldDoc:
    id: str
    text: str
    tokens: list[tuple[int, int, str]]  # start, end, PTB tag
    ents: list[tuple[int, int, str]]
    sents: list[tuple[int, int]]


def read_gold(path: str | Path) -> list[GoldDoc]:
    docs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            docs.append(
                GoldDoc(
                    id=row["id"],
                    text=row["text"],
                    tokens=[(s, e, tag) for s, e, tag, *_ in row["tokens"]],
                    ents=[(s, e, label) for s, e, label in row["ents"]],
                    sents=[(s, e) for s, e in row["sents"]],
                )
            )
    return docs


@dataclass
class Predicted:
    tokens: Iterable[tuple[int, int, str | None]]
    ents: Iterable[tuple[int, int, str]]
    sent_starts: Iterable[int]


@dataclass
class Scores:
    tag_accuracy: float
    ent_precision: float
    ent_recall: float
    ent_f1: float
    sent_f1: float
    gold_tokens: int

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _f1(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _sent_starts(text: str, starts: Iterable[int]) -> set[int]:
    """Sentence starts moved past leading whitespace (spaCy may start a sentence with a space token)."""
    out = set()
    for s in starts:
        while s < len(text) and text[s].isspace():
            s += 1
        if s < len(text):
            out.add(s)
    return out


def score(gold: list[GoldDoc], predicted: dict[str, Predicted]) -> Scores:
    tag_ok = tag_total = 0
    ent_tp = ent_pred = ent_gold = 0
    sent_tp = sent_pred = sent_gold = 0
    for doc in gold:
        pred = predicted[doc.id]
        tags = {(s, e): t for s, e, t in pred.tokens}
        for s, e, t in doc.tokens:
            tag_total += 1
            tag_ok += tags.get((s, e)) == t
        p_ents = {(s, e, ENTITY_LABELS[label]) for s, e, label in pred.ents if label in ENTITY_LABELS}
        g_ents = {(s, e, ENTITY_LABELS.get(label, label)) for s, e, label in doc.ents}
        ent_tp += len(p_ents & g_ents)
        ent_pred += len(p_ents)
        ent_gold += len(g_ents)
        p_sents = _sent_starts(doc.text, pred.sent_starts)
        g_sents = _sent_starts(doc.text, (s for s, _ in doc.sents))
        sent_tp += len(p_sents & g_sents)
        sent_pred += len(p_sents)
        sent_gold += len(g_sents)
    ep, er, ef = _f1(ent_tp, ent_pred, ent_gold)
    return Scores(
        tag_accuracy=tag_ok / tag_total if tag_total else 0.0,
        ent_precision=ep,
        ent_recall=er,
        ent_f1=ef,
        sent_f1=_f1(sent_tp, sent_pred, sent_gold)[2],
        gold_tokens=tag_total,
    )


def predicted_from_doc(doc) -> Predicted:
    """A spaCy Doc as a Predicted (for scoring plain nlp.pipe)."""
    return Predicted(
        tokens=[(t.idx, t.idx + len(t.text), t.tag_) for t in doc],
        ents=[(e.start_char, e.end_char, e.label_) for e in doc.ents],
        sent_starts=[s.start_char for s in doc.sents],
    )

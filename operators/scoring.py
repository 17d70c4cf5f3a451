"""Score annotations against gold character spans: a gold_dev.jsonl-style file, or the EWT dev
documents built from their sources (the CoNLL-U and Universal NER IOB2 files, `ewt_dev_gold`).

A gold token counts as correctly tagged when a predicted token has exactly its (start, end) and
its tag; entities count by exact (start, end, label) after mapping labels to PER/ORG/LOC;
sentences by their start offsets (whitespace-trimmed). Standard errors come from a bootstrap over
documents (tokens and entities of one document are not independent draws).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# OntoNotes (en_core_web_*) labels -> the gold PER/ORG/LOC scheme; others are not scored
ENTITY_LABELS = {"PERSON": "PER", "PER": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC"}


@dataclass
class GoldDoc:
    id: str
    text: str
    tokens: list[tuple[int, int, str]]  # start, end, PTB tag
    ents: list[tuple[int, int, str]]
    sents: list[tuple[int, int]]
    # char ranges whose entities the gold does not know: predicted entities there are not scored
    unknown_ents: list[tuple[int, int]] = field(default_factory=list)


def read_gold(path: str | Path) -> list[GoldDoc]:
    """A gold_dev.jsonl-style file, or an EWT folder (then `ewt_dev_gold` of it)."""
    if Path(path).is_dir():
        return ewt_dev_gold(path)
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


def ewt_dev_gold(ewt_dir: str | Path) -> list[GoldDoc]:
    """The EWT dev documents' gold from their sources: raw text (docs.jsonl), tokens, tags and
    sentences (en_ewt-ud-dev.conllu) and entities (en_ewt-ud-dev.iob2). gold_dev.jsonl was made
    from the same files but lacks the words it could not place (2.9 % of them) and the entities
    just before a possessive 's (dropped, or cut to their first words)."""
    from .training import load_ewt

    docs = []
    for doc in load_ewt(ewt_dir, "dev"):
        bounds = doc.sent_starts + [len(doc.tokens)]
        docs.append(GoldDoc(
            id=doc.id,
            text=doc.text,
            tokens=[(t.start, t.end, t.tag) for t in doc.tokens],
            ents=list(doc.ents or []),
            sents=[(doc.tokens[bounds[k]].start, doc.tokens[bounds[k + 1] - 1].end) for k in range(len(doc.sent_starts))],
            unknown_ents=list(doc.unknown_ents),
        ))
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
    gold_entities: int = 0
    documents: int = 0
    tag_accuracy_se: float = 0.0  # standard errors: bootstrap over documents
    ent_f1_se: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _f1(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


# columns of the per-document counts that `score` sums
TAG_OK, TAG_TOTAL, ENT_TP, ENT_PRED, ENT_GOLD, SENT_TP, SENT_PRED, SENT_GOLD = range(8)
BOOTSTRAP_SAMPLES = 2000


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.shape(num)), where=np.asarray(den) > 0)


def _f1_array(tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray) -> np.ndarray:
    return _ratio(2 * tp, n_pred + n_gold)  # 2PR / (P + R), and 0 where nothing was predicted or gold


def bootstrap_se(counts: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, float]:
    """Standard errors of tag accuracy and entity F1: the spread of both over `samples` resamples
    of the documents (rows of `counts`, with replacement; a fixed seed, so reruns agree)."""
    if len(counts) < 2:
        return {"tag_accuracy": 0.0, "ent_f1": 0.0}
    rng = np.random.default_rng(seed)
    sums = np.stack([counts[rng.integers(0, len(counts), len(counts))].sum(axis=0) for _ in range(samples)])
    return {
        "tag_accuracy": float(_ratio(sums[:, TAG_OK], sums[:, TAG_TOTAL]).std()),
        "ent_f1": float(_f1_array(sums[:, ENT_TP], sums[:, ENT_PRED], sums[:, ENT_GOLD]).std()),
    }


def _sent_starts(text: str, starts: Iterable[int]) -> set[int]:
    """Sentence starts moved past leading whitespace (spaCy may start a sentence with a space token)."""
    out = set()
    for s in starts:
        while s < len(text) and text[s].isspace():
            s += 1
        if s < len(text):
            out.add(s)
    return out


def document_counts(doc: GoldDoc, pred: Predicted) -> list[int]:
    """One document's counts, in the order of the TAG_OK ... SENT_GOLD columns."""
    tags = {(s, e): t for s, e, t in pred.tokens}
    tag_ok = sum(tags.get((s, e)) == t for s, e, t in doc.tokens)
    p_ents = {(s, e, ENTITY_LABELS[label]) for s, e, label in pred.ents if label in ENTITY_LABELS
              and not any(s < b and e > a for a, b in doc.unknown_ents)}
    g_ents = {(s, e, ENTITY_LABELS.get(label, label)) for s, e, label in doc.ents}
    p_sents = _sent_starts(doc.text, pred.sent_starts)
    g_sents = _sent_starts(doc.text, (s for s, _ in doc.sents))
    return [tag_ok, len(doc.tokens), len(p_ents & g_ents), len(p_ents), len(g_ents),
            len(p_sents & g_sents), len(p_sents), len(g_sents)]


def score(gold: list[GoldDoc], predicted: dict[str, Predicted]) -> Scores:
    """Scores of `predicted` against `gold`; a gold document with no prediction counts as one
    predicted with nothing (no tokens, entities or sentences)."""
    empty = Predicted(tokens=[], ents=[], sent_starts=[])
    counts = np.array([document_counts(doc, predicted.get(doc.id, empty)) for doc in gold], dtype=np.int64).reshape(-1, 8)
    total = counts.sum(axis=0)
    ep, er, ef = _f1(int(total[ENT_TP]), int(total[ENT_PRED]), int(total[ENT_GOLD]))
    se = bootstrap_se(counts)
    return Scores(
        tag_accuracy=float(total[TAG_OK] / total[TAG_TOTAL]) if total[TAG_TOTAL] else 0.0,
        ent_precision=ep,
        ent_recall=er,
        ent_f1=ef,
        sent_f1=_f1(int(total[SENT_TP]), int(total[SENT_PRED]), int(total[SENT_GOLD]))[2],
        gold_tokens=int(total[TAG_TOTAL]),
        gold_entities=int(total[ENT_GOLD]),
        documents=len(gold),
        tag_accuracy_se=se["tag_accuracy"],
        ent_f1_se=se["ent_f1"],
    )


def predicted_from_doc(doc) -> Predicted:
    """A spaCy Doc as a Predicted (for scoring plain nlp.pipe)."""
    return Predicted(
        tokens=[(t.idx, t.idx + len(t.text), t.tag_) for t in doc],
        ents=[(e.start_char, e.end_char, e.label_) for e in doc.ents],
        sent_starts=[s.start_char for s in doc.sents],
    )

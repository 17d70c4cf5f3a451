"""Training data for the shipped default pipeline, from UD English-EWT (CC BY-SA 4.0).

Gold tags, lemmas and dependencies come from the CoNLL-U files; each document's tokens are placed on
its raw text (docs.jsonl), so training sees the same texts, whitespace tokens and paragraph breaks
that annotation sees. Entities: gold PER/ORG/LOC from gold_dev.jsonl for dev documents; silver
labels from another pipeline (en_core_web_sm) for train documents.

Splits are fixed by a hash of the document id, so they never change between runs or machines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab

from .scoring import ENTITY_LABELS

SPACE_TAG = "_SP"
PROPER_NOUN_TAGS = ("NNP", "NNPS")


@dataclass
class Token:
    start: int
    end: int
    tag: str
    lemma: str
    head: int  # index of the head token in the document; itself for a root
    dep: str


@dataclass
class GoldDoc:
    id: str
    text: str
    tokens: list[Token]
    sent_starts: list[int]  # token indexes
    ents: list[tuple[int, int, str]] | None = None  # char spans; None: not annotated
    genre: str = ""
    skipped_tokens: int = field(default=0)


def split_of(doc_id: str, shares: dict[str, float]) -> str:
    """Deterministic split for `doc_id`: shares in order, e.g. {"train": .85, "select": .15}."""
    point = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    total = 0.0
    for name, share in shares.items():
        total += share
        if point < total:
            return name
    return name


def read_conllu(path: str | Path) -> dict[str, list[list[dict]]]:
    """CoNLL-U → {newdoc id: [sentence: [word dict]]}; a multiword token's words carry its surface."""
    docs: dict[str, list[list[dict]]] = {}
    current: list[dict] = []
    doc_id = ""
    mwt: dict[int, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# newdoc id = "):
                doc_id = line.split("= ", 1)[1]
                docs.setdefault(doc_id, [])
            elif not line:
                if current:
                    docs[doc_id].append(current)
                current, mwt = [], {}
            elif not line.startswith("#"):
                cols = line.split("\t")
                if "." in cols[0]:  # empty nodes (enhanced graphs only)
                    continue
                if "-" in cols[0]:
                    first, last = map(int, cols[0].split("-"))
                    for i in range(first, last + 1):
                        mwt[i] = (last, cols[1])
                    continue
                i = int(cols[0])
                current.append(
                    {"id": i, "form": cols[1], "lemma": cols[2], "tag": cols[4], "head": int(cols[6]),
                     "dep": "ROOT" if cols[7] == "root" else cols[7], "mwt": mwt.get(i)}
                )
    if current:
        docs[doc_id].append(current)
    return docs


def align(doc_id: str, text: str, sentences: list[list[dict]]) -> GoldDoc:
    """Place every word of `sentences` on `text` (in order; only whitespace may lie between)."""
    tokens: list[Token] = []
    sent_starts: list[int] = []
    pos = 0
    for sent in sentences:
        offset = len(tokens)
        sent_starts.append(offset)
        i = 0
        while i < len(sent):
            word = sent[i]
            group = [word]
            if word["mwt"]:
                last, surface = word["mwt"]
                group = [w for w in sent[i:] if w["id"] <= last]
            else:
                surface = word["form"]
            start = text.find(surface, pos)
            if start < 0 or text[pos:start].strip():
                raise ValueError(f"{doc_id}: cannot place {surface!r} after char {pos}")
            pieces = _split_surface(surface, [w["form"] for w in group])
            for w, (a, b) in zip(group, pieces):
                head = offset + w["head"] - 1 if w["head"] > 0 else None
                tokens.append(Token(start + a, start + b, w["tag"], w["lemma"], -1 if head is None else head, w["dep"]))
            pos = start + len(surface)
            i += len(group)
        for k in range(offset, len(tokens)):  # roots point at themselves
            if tokens[k].head == -1:
                tokens[k].head = k
    return GoldDoc(doc_id, text, tokens, sent_starts)


def _split_surface(surface: str, forms: list[str]) -> list[tuple[int, int]]:
    """Char ranges of a multiword token's words in its surface ("don't" → do, n't)."""
    if len(forms) == 1:
        return [(0, len(surface))]
    if "".join(forms).lower() == surface.lower():
        spans, pos = [], 0
        for form in forms:
            spans.append((pos, pos + len(form)))
            pos += len(form)
        return spans
    # words that do not spell the surface (rare): the first word takes it all but one char per
    # following word, so every word keeps a non-empty range and the text is unchanged
    n = len(forms)
    cut = max(1, len(surface) - (n - 1))
    return [(0, cut)] + [(cut + k, cut + k + 1) for k in range(n - 1)]


def load_ewt(ewt_dir: str | Path, split: str) -> list[GoldDoc]:
    """Documents of the EWT `split` ("train" or "dev") on their raw text; dev ones with gold entities."""
    ewt = Path(ewt_dir)
    raw = {}
    with open(ewt / "docs.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            raw[row["id"]] = row
    gold_ents = {}
    if split == "dev":
        with open(ewt / "gold_dev.jsonl", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                gold_ents[row["id"]] = [(s, e, label) for s, e, label in row["ents"]]
    docs = []
    for doc_id, sentences in read_conllu(ewt / f"en_ewt-ud-{split}.conllu").items():
        doc = align(doc_id, raw[doc_id]["text"], sentences)
        doc.genre = raw[doc_id].get("genre", "")
        doc.ents = gold_ents.get(doc_id) if split == "dev" else None
        docs.append(doc)
    return docs


def chunks(doc: GoldDoc, max_sents: int) -> Iterator[GoldDoc]:
    """Cut a document into pieces of at most `max_sents` sentences (text and offsets re-based)."""
    bounds = doc.sent_starts + [len(doc.tokens)]
    for k in range(0, len(doc.sent_starts), max_sents):
        first, stop = bounds[k], bounds[min(k + max_sents, len(doc.sent_starts))]
        char0 = doc.tokens[first].start
        char1 = doc.tokens[stop].start if stop < len(doc.tokens) else len(doc.text)
        tokens = [
            Token(t.start - char0, t.end - char0, t.tag, t.lemma, t.head - first, t.dep) for t in doc.tokens[first:stop]
        ]
        ents = None
        if doc.ents is not None:
            ents = [(s - char0, e - char0, label) for s, e, label in doc.ents if s >= char0 and e <= char1]
        yield GoldDoc(
            f"{doc.id}#{k // max_sents}",
            doc.text[char0:char1].rstrip(),
            tokens,
            [s - first for s in doc.sent_starts if first <= s < stop],
            ents,
            doc.genre,
        )


def to_example(
    vocab: Vocab, doc: GoldDoc, ents: list[tuple[int, int, str]] | None, unsure_proper_nouns: bool = False
) -> Example:
    """An Example whose predicted doc is the raw text's tokens with gold sentence boundaries set.

    Whitespace between tokens other than one space becomes a whitespace token (tag _SP, attached
    to the token before it), as spaCy's tokenizer makes one. Entities that do not fall on token
    boundaries are dropped; `ents=None` leaves entities unannotated.

    `unsure_proper_nouns` is for silver entities: a gold proper noun outside every given entity is
    marked missing (no cost whatever the recognizer predicts there) instead of "outside". Almost
    every gold entity holds a proper noun (491 of 493 on the non-test EWT dev documents) and the
    silver labels miss 36 % of gold entities there, so "outside" on those tokens would teach the
    recognizer to miss them too (models/corpus_nlp_minilm/README.md: recall 0.51 → 0.64).
    """
    words: list[str] = []
    spaces: list[bool] = []
    gold: list[int] = []  # Doc token -> gold token index, -1 for whitespace tokens

    def add_gap(gap: str) -> None:
        if words and gap.startswith(" "):
            spaces[-1] = True
            gap = gap[1:]
        if gap:
            words.append(gap)
            spaces.append(False)
            gold.append(-1)

    pos = 0
    for i, t in enumerate(doc.tokens):
        add_gap(doc.text[pos : t.start])
        words.append(doc.text[t.start : t.end])
        spaces.append(False)
        gold.append(i)
        pos = t.end
    add_gap(doc.text[pos:])

    predicted = Doc(vocab, words=words, spaces=spaces)
    if predicted.text != doc.text:
        raise ValueError(f"{doc.id}: rebuilt text differs from the raw text")
    doc_index = {g: d for d, g in enumerate(gold) if g >= 0}
    sent_starts = {doc_index[s] for s in doc.sent_starts}
    tags, lemmas, heads, deps = [], [], [], []
    for d, g in enumerate(gold):
        if g < 0:  # whitespace: belongs to the sentence before it
            tags.append(SPACE_TAG)
            lemmas.append(words[d])
            heads.append(d - 1 if d > 0 else min(1, len(words) - 1))
            deps.append("dep")
        else:
            t = doc.tokens[g]
            tags.append(t.tag)
            lemmas.append(t.lemma)
            heads.append(doc_index[t.head])
            deps.append(t.dep)
    for d, token in enumerate(predicted):
        token.is_sent_start = d == 0 or d in sent_starts
    example = Example.from_dict(predicted, {"tags": tags, "lemmas": lemmas, "heads": heads, "deps": deps})
    if ents is not None:
        spans = [example.reference.char_span(s, e, label=label) for s, e, label in ents]
        kept = _non_overlapping([s for s in spans if _learnable(s)])
        missing = []
        if unsure_proper_nouns:
            inside = {i for span in kept for i in range(span.start, span.end)}
            ref = example.reference
            missing = [ref[i : i + 1] for i, t in enumerate(ref) if t.tag_ in PROPER_NOUN_TAGS and i not in inside]
        example.reference.set_ents(kept, missing=missing, default="outside")
    return example


def _learnable(span) -> bool:
    """An entity spaCy's NER can learn: on token boundaries, within one sentence, no whitespace token."""
    if span is None:
        return False
    return not any(t.is_space or (t.is_sent_start and t.i > span.start) for t in span)


def _non_overlapping(spans):
    from spacy.util import filter_spans

    return filter_spans(spans)


def silver_entities(annotate: Callable[[Doc], Doc], vocab: Vocab, doc: GoldDoc) -> list[tuple[int, int, str]]:
    """Entities another pipeline finds on the gold tokens of `doc`, mapped to PER/ORG/LOC.

    Two corrections from the gold tags bring en_core_web_sm's entities closer to EWT's gold ones
    (measured on EWT dev, whose gold entities are known: F1 0.548 → 0.618): an entity needs at
    least one gold proper noun, and a leading determiner is left out ("the Pentagon" → Pentagon).
    """
    example = to_example(vocab, doc, None)
    words = [t.text for t in example.predicted]
    spaces = [bool(t.whitespace_) for t in example.predicted]
    tagged = annotate(Doc(annotate.vocab, words=words, spaces=spaces))  # type: ignore[attr-defined]
    gold = example.reference
    ents = []
    for ent in tagged.ents:
        tokens = gold[ent.start : ent.end]
        if ent.label_ not in ENTITY_LABELS or not any(t.tag_ in PROPER_NOUN_TAGS for t in tokens):
            continue
        start = tokens[1].idx if len(tokens) > 1 and tokens[0].tag_ == "DT" else ent.start_char
        ents.append((start, ent.end_char, ENTITY_LABELS[ent.label_]))
    return ents

"""Training data for the shipped default pipeline, from UD English-EWT (CC BY-SA 4.0).

Gold tags, lemmas and dependencies come from the CoNLL-U files; each document's tokens are placed on
its raw text (docs.jsonl), so training sees the same texts, whitespace tokens and paragraph breaks
that annotation sees. Entities: gold PER/ORG/LOC of Universal NER, from its IOB2 files
(en_ewt-ud-{train,dev}.iob2, aligned by sent_id; a sentence whose words differ from the CoNLL-U's,
or that has no entry, keeps its entities unknown, not "outside"). gold_dev.jsonl is not read: it
lacks the dev words it could not place on the raw text (2.9 % of them, clitics such as 's and n't
among them), and with them the entities just before a possessive 's (dropped, or cut to their
first words).

Splits are fixed by a hash of the document id, so they never change between runs or machines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab

SPACE_TAG = "_SP"
# the entity labels scored (Universal NER's OTH is not one of them: its words count as outside)
GOLD_ENTITY_LABELS = ("PER", "ORG", "LOC")


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
    # char ranges (whole sentences) whose entities are unknown although `ents` is given
    unknown_ents: list[tuple[int, int]] = field(default_factory=list)


class Sentence(list):
    """A CoNLL-U sentence: its word dicts, and its sent_id."""

    def __init__(self, words=(), sent_id: str = ""):
        super().__init__(words)
        self.sent_id = sent_id


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
    """CoNLL-U → {newdoc id: [Sentence of word dicts]}; a multiword token's words carry its surface."""
    docs: dict[str, list[list[dict]]] = {}
    current = Sentence()
    doc_id = ""
    mwt: dict[int, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# newdoc id = "):
                doc_id = line.split("= ", 1)[1]
                docs.setdefault(doc_id, [])
            elif line.startswith("# sent_id = "):
                current.sent_id = line.split("= ", 1)[1].strip()
            elif not line:
                if current:
                    docs[doc_id].append(current)
                current, mwt = Sentence(), {}
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


def read_iob2(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Universal NER's IOB2 file → {sent_id: [(word, tag)]}."""
    sentences: dict[str, list[tuple[str, str]]] = {}
    words: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# sent_id = "):
                words = sentences.setdefault(line.split("= ", 1)[1].strip(), [])
            elif line and not line.startswith("#"):
                cols = line.split("\t")
                words.append((cols[1], cols[2] if len(cols) > 2 else "O"))
    return sentences


def iob2_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(first word, last word + 1, label) of each PER/ORG/LOC entity in IOB2 tags.

    Other labels (OTH) and a stray `B-O` count as outside; an I- tag that does not continue an
    entity of its label starts one (as IOB2 readers usually repair it).
    """
    spans: list[tuple[int, int, str]] = []
    current: list = []  # [first, label] of the entity being read
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and current and current[1] == label
        if current and not continues:
            spans.append((current[0], i, current[1]))
            current = []
        if prefix in ("B", "I") and label in GOLD_ENTITY_LABELS and not continues:
            current = [i, label]
    return spans


def sentence_entities(tokens: list[Token], offset: int, sentence: list[dict],
                      gold: list[tuple[str, str]] | None) -> list[tuple[int, int, str]] | None:
    """Char spans of a sentence's gold entities (its words start at tokens[offset]); None when
    `gold` is missing or its words differ from the sentence's (then its entities are unknown)."""
    if gold is None or [w for w, _ in gold] != [w["form"] for w in sentence]:
        return None
    return [(tokens[offset + a].start, tokens[offset + b - 1].end, label) for a, b, label in iob2_spans([t for _, t in gold])]


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
    """Documents of the EWT `split` ("train" or "dev") on their raw text (docs.jsonl), with gold
    tags, parses and sentences (en_ewt-ud-`split`.conllu) and entities (en_ewt-ud-`split`.iob2)."""
    ewt = Path(ewt_dir)
    raw = {}
    with open(ewt / "docs.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            raw[row["id"]] = row
    iob2 = read_iob2(ewt / f"en_ewt-ud-{split}.iob2")
    docs = []
    for doc_id, sentences in read_conllu(ewt / f"en_ewt-ud-{split}.conllu").items():
        doc = align(doc_id, raw[doc_id]["text"], sentences)
        doc.genre = raw[doc_id].get("genre", "")
        doc.ents = []
        bounds = doc.sent_starts + [len(doc.tokens)]
        for k, sentence in enumerate(sentences):
            ents = sentence_entities(doc.tokens, bounds[k], sentence, iob2.get(sentence.sent_id))
            if ents is None:
                doc.unknown_ents.append((doc.tokens[bounds[k]].start, doc.tokens[bounds[k + 1] - 1].end))
            else:
                doc.ents.extend(ents)
        docs.append(doc)
    return docs


# The most frequent disagreements between spaCy's English tokenizer and UD EWT's tokens on EWT's
# train share, where a rule settles them: EWT keeps runs of ! and ? (and <<, >>, **, ==, __, --) as
# one token, keeps the prefixes below attached with their hyphen ("e-mail", "non-profit"), keeps
# phone numbers whole, and splits "and/or" and a clock time's AM/PM ("7:30PM"). A token the
# tokenizer cuts otherwise than the gold has no right tag in the evaluation, whatever the tagger does.
PUNCT_RUNS = [r"[.!?]*[!?][.!?]*(?<=..)", r"<{2,}", r">{2,}", r"\*{2,}", r"={2,}", r"_{2,}", r"-{2,}"]
HYPHEN_PREFIXES = ["e", "non", "pre", "mid", "re", "anti", "post", "co", "multi", "over", "ex", "pro", "sub", "semi"]
PHONE_NUMBER = r"(?:\d-)?\d{3}-\d{3}-\d{4}|\d{3}-\d{4}|\d{5}-\d{4}"


def adapt_tokenizer(nlp) -> None:
    """Make `nlp`'s (English) tokenizer cut text as UD EWT does where the two differ most often.

    The rules are saved with the pipeline (its tokenizer's regexes and special cases)."""
    import re

    from spacy.lang.char_classes import ALPHA, HYPHENS
    from spacy.util import compile_infix_regex, compile_prefix_regex, compile_suffix_regex

    tokenizer, defaults = nlp.tokenizer, nlp.Defaults
    tokenizer.prefix_search = compile_prefix_regex(PUNCT_RUNS + list(defaults.prefixes)).search
    tokenizer.suffix_search = compile_suffix_regex(PUNCT_RUNS + [r"(?<=[0-9])(?:am|pm|AM|PM)"] + list(defaults.suffixes)).search
    hyphen = r"(?<=[{a}0-9])(?:{h})(?=[{a}])".format(a=ALPHA, h=HYPHENS)
    infixes = list(defaults.infixes)
    if hyphen not in infixes:
        raise RuntimeError("spaCy's English hyphen infix changed: review adapt_tokenizer")
    attached = "".join(f"(?<!\\b{v})" for p in HYPHEN_PREFIXES for v in sorted({p, p.title(), p.upper()}))
    infixes[infixes.index(hyphen)] = attached + hyphen
    tokenizer.infix_finditer = compile_infix_regex(infixes).finditer
    tokenizer.token_match = re.compile(f"^(?:{PHONE_NUMBER})$").match
    tokenizer.rules = {k: v for k, v in tokenizer.rules.items() if k != "and/or"}


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
            unknown_ents=[(s - char0, e - char0) for s, e in doc.unknown_ents if s >= char0 and e <= char1],
        )


def to_example(vocab: Vocab, doc: GoldDoc, ents: list[tuple[int, int, str]] | None) -> Example:
    """An Example whose predicted doc is the raw text's tokens with gold sentence boundaries set.

    Whitespace between tokens other than one space becomes a whitespace token (tag _SP, attached
    to the token before it), as spaCy's tokenizer makes one. `ents=None` leaves entities
    unannotated. The tokens of an entity spaCy's recognizer cannot learn (off token boundaries,
    across sentences, over a whitespace token) and those in `doc.unknown_ents` are marked missing
    (no cost whatever the recognizer predicts there); every other token is "outside".
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
        ref = example.reference
        spans = [ref.char_span(s, e, label=label) for s, e, label in ents]
        kept = _non_overlapping([s for s in spans if _learnable(s)])
        unknown = [(s, e) for (s, e, _), span in zip(ents, spans) if not _learnable(span)] + list(doc.unknown_ents)
        inside = {i for span in kept for i in range(span.start, span.end)}
        missing = [ref[t.i : t.i + 1] for t in ref if t.i not in inside
                   and any(t.idx < e and t.idx + len(t) > s for s, e in unknown)]
        ref.set_ents(kept, missing=missing, default="outside")
    return example


def _learnable(span) -> bool:
    """An entity spaCy's NER can learn: on token boundaries, within one sentence, no whitespace token."""
    if span is None:
        return False
    return not any(t.is_space or (t.is_sent_start and t.i > span.start) for t in span)


def _non_overlapping(spans):
    from spacy.util import filter_spans

    return filter_spans(spans)

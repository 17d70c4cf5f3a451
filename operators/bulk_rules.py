"""spaCy's rule-based token components applied over arrays: same rules, same Doc attributes.

spaCy's `AttributeRuler` runs every pattern through its Matcher token by token and sets each match's
attributes through a Span and a Token object; the rule `Lemmatizer` makes a Token per token and
calls Python code on it. Both compute, for most tokens, a function of a few attribute values:

- AttributeRuler: a token pattern is a conjunction of conditions, each on one attribute ("LOWER":
  "the", "TAG": {"IN": [...]}), and spaCy's Matcher evaluates each from that attribute's value,
  read as `Doc.to_array` reads it. `BulkAttributeRuler` has spaCy's Matcher evaluate each distinct
  condition once per distinct value of its attribute (on a Doc of one token per new value,
  remembered across batches); values that satisfy the same conditions share a class, and a
  token's classes decide every one-token pattern, so the rules' outcome is computed once per
  distinct combination of classes. Patterns of several tokens run through spaCy's Matcher as
  they are, on the stretches of a Doc where their first token matches. Each token takes, for each
  attribute, the value of the last rule (in the ruler's order) that matched it, as spaCy's sorted
  matches do, and one `Doc.from_array` writes them.
- Lemmatizer: the rule and lookup lemmas of spaCy's `Lemmatizer` (and `EnglishLemmatizer`) are a
  function of a token's ORTH, POS and MORPH (the key of spaCy's own lemma cache).
  `BulkLemmatizer` computes a lemma once per distinct key, with an instance of the same class and
  tables, and writes LEMMA with `Doc.from_array` for the tokens the original would lemmatize.

`use_bulk_rules(nlp)` replaces, in place and under the same names, the components these arguments
hold for; any other AttributeRuler (one setting other attributes, patterns with quantifiers, on_match
callbacks) or lemmatizer is left as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import srsly
from spacy.attrs import (
    DEP, ENT_IOB, ENT_TYPE, IDS, LEMMA, MORPH, NORM, ORTH, POS, SENT_START, SPACY, TAG,
)
from spacy.lang.en.lemmatizer import EnglishLemmatizer
from spacy.errors import Errors
from spacy.language import Language
from spacy.lookups import Lookups, Table
from spacy.matcher import Matcher
from spacy.pipeline import AttributeRuler, Lemmatizer
from spacy.pipeline.attributeruler import attribute_ruler_score
from spacy.tokens import Doc
from spacy.util import minibatch

ATTRIBUTE_RULER = "corpus_nlp_attribute_ruler"
LEMMATIZER = "corpus_nlp_lemmatizer"

# attributes the fast path sets (token attributes only: spaCy's set_token_attrs also writes lexeme
# attributes, which these are not)
SETTABLE = (TAG, POS, MORPH, LEMMA, DEP)
# token attributes a one-token pattern may test; the other testable attributes are the lexeme's
# (ORTH, LOWER, SHAPE, flags, ...), which the token's ORTH determines
TOKEN_LEVEL = {TAG, POS, MORPH, LEMMA, DEP, ENT_IOB, ENT_TYPE, NORM, SPACY}
LEXICAL = {IDS[name] for name in ("ID", "ORTH", "LOWER", "SHAPE", "PREFIX", "SUFFIX", "LENGTH", "LANG")}
FLAG_LIMIT = 64  # attribute ids below this are lexeme flags (IS_ALPHA, LIKE_NUM, ...)
MAX_CACHED = 200_000  # values of one attribute, or lemma keys, remembered at most: emptied when full
SUPPORTED_LEMMATIZERS = (Lemmatizer, EnglishLemmatizer)  # lemmatize() reads only ORTH, POS and MORPH
LEMMATIZER_MODES = ("rule", "lookup")


def use_bulk_rules(nlp: Language) -> list[str]:
    """Replace each AttributeRuler and lemmatizer that the bulk versions reproduce; return their names."""
    replaced = []
    for name, proc in list(nlp.pipeline):
        if type(proc) is AttributeRuler and compile_rules(proc) is not None:
            state = proc.to_bytes(exclude=["vocab"])
            new = nlp.replace_pipe(name, ATTRIBUTE_RULER, config={"validate": proc.validate})
            new.from_bytes(state, exclude=["vocab"])
            new.scorer = proc.scorer
            new.rules()  # compiled now, outside any memory zone
            replaced.append(name)
        elif type(proc) in SUPPORTED_LEMMATIZERS and proc.mode in LEMMATIZER_MODES:
            config = {"mode": proc.mode, "overwrite": proc.overwrite}
            if type(nlp.create_pipe("lemmatizer", config={"model": None, **config})) is not type(proc):
                continue  # the language's lemmatizer factory makes another class: keep this one
            state = proc.to_bytes(exclude=["vocab"])
            new = nlp.replace_pipe(name, LEMMATIZER, config=config)
            new.lemmatizer.from_bytes(state, exclude=["vocab"])
            new.lemmatizer.scorer = proc.scorer
            replaced.append(name)
    return replaced


# ---------------------------------------------------------------- attribute ruler


class _Rules:
    """An AttributeRuler's rules, split for the bulk path.

    A token pattern is a conjunction of conditions, each on one attribute ("LOWER": "the",
    "TAG": {"IN": [...]}); spaCy's Matcher evaluates each from that attribute's value alone. Each
    distinct condition here is one pattern of a Matcher per attribute, run once per distinct value
    of that attribute (on a Doc of one token per new value), and values that satisfy the same
    conditions share a class. A token's classes, one per tested attribute, decide every one-token
    pattern and every longer pattern's first token, so the rules' outcome is computed once per
    distinct combination of classes.
    """

    def __init__(self, ruler: AttributeRuler, single: list[tuple[int, list[dict]]], multi: list[tuple[int, list]],
                 starts: list[dict] | None):
        vocab = ruler.vocab
        self.vocab = vocab
        self._condition_of: dict[int, int] = {}  # match id -> condition id
        self.settable = [a for a in SETTABLE if any(a in attrs for attrs in ruler.attrs)]
        self.sets = [[(self.settable.index(a), int(v)) for a, v in attrs.items()] for attrs in ruler.attrs]
        self.indices = list(ruler.indices)
        conditions: dict[tuple[int, str], int] = {}  # (attribute, condition as JSON) -> condition id
        self.tested: list[int] = []  # attributes some condition tests, in column order
        self.matchers: list[Matcher] = []  # per tested attribute: its conditions, keyed by condition id

        def condition_ids(spec: dict) -> frozenset[int]:
            ids = set()
            for key, value in spec.items():
                attr = _attr_id(key)
                found = conditions.get((attr, srsly.json_dumps(value, sort_keys=True)))
                if found is None:
                    found = conditions[(attr, srsly.json_dumps(value, sort_keys=True))] = len(conditions)
                    if attr not in self.tested:
                        self.tested.append(attr)
                        self.matchers.append(Matcher(vocab))
                    key_name = f"{ATTRIBUTE_RULER}:condition:{found}"
                    self.matchers[self.tested.index(attr)].add(key_name, [[{key: value}]])
                    self._condition_of[vocab.strings.add(key_name)] = found
                ids.add(found)
            return frozenset(ids)

        self.single = [(rule, [condition_ids(spec) for spec in specs]) for rule, specs in single]
        self.starts = None if starts is None else [condition_ids(spec) for spec in starts]
        self.multi = Matcher(vocab) if multi else None  # the rules of longer patterns, as spaCy runs them
        self.multi_rule: dict[int, int] = {}
        self.longest = max((len(p) for _, patterns in multi for p in patterns), default=0)
        for rule, patterns in multi:
            self.multi_rule[vocab.strings.add(f"{ATTRIBUTE_RULER}:{rule}")] = rule
            self.multi.add(f"{ATTRIBUTE_RULER}:{rule}", patterns)
        self.token_level = [a in TOKEN_LEVEL for a in self.tested]
        # per tested attribute: value -> class, and each class's satisfied conditions
        self.value_class: list[dict[int, int]] = [{} for _ in self.tested]
        self.class_ids: list[dict[frozenset[int], int]] = [{} for _ in self.tested]
        self.class_conditions: list[list[frozenset[int]]] = [[] for _ in self.tested]
        # per combination of classes: (rule setting each settable attribute or -1, its value, can a
        # longer pattern start here)
        self.outcomes: dict[tuple[int, ...], tuple[tuple[int, ...], tuple[int, ...], bool]] = {}

    def classes(self, column: int, values: np.ndarray, orths: np.ndarray, spaces: np.ndarray) -> np.ndarray:
        """The class of each value of a tested attribute (`orths`, `spaces`: of a token that has it)."""
        known = self.value_class[column]
        distinct, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        keys = distinct.tolist()
        new = [i for i, v in enumerate(keys) if v not in known]
        if new:
            if len(known) + len(new) > MAX_CACHED:  # an open vocabulary: start over rather than grow
                known.clear()
                new = list(range(len(keys)))
            rows = first[new]
            strings = self.vocab.strings
            probe = Doc(self.vocab, words=[strings[o] for o in orths[rows].tolist()], spaces=spaces[rows].astype(bool).tolist())
            attr = self.tested[column]
            if self.token_level[column] and attr != SPACY:
                probe.from_array([attr], np.ascontiguousarray(distinct[new]))
            satisfied: list[set[int]] = [set() for _ in new]
            for match_id, start, _ in self.matchers[column](probe, allow_missing=True, as_spans=False):
                satisfied[start].add(self._condition_of[match_id])
            ids, sets = self.class_ids[column], self.class_conditions[column]
            for i, conds in zip(new, satisfied):
                conds = frozenset(conds)
                if conds not in ids:
                    ids[conds] = len(sets)
                    sets.append(conds)
                known[keys[i]] = ids[conds]
        return np.array([known[v] for v in keys], dtype=np.int64)[inverse.reshape(-1)]

    def outcome(self, combination: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
        found = self.outcomes.get(combination)
        if found is None:
            satisfied = frozenset().union(*(self.class_conditions[c][k] for c, k in enumerate(combination)))
            width = len(self.settable)
            rule_of, value_of = [-1] * width, [0] * width
            for rule, specs in self.single:  # in the ruler's order: later rules win, as spaCy sorts its matches
                if any(spec <= satisfied for spec in specs):
                    for col, value in self.sets[rule]:
                        rule_of[col], value_of[col] = rule, value
            can_start = self.multi is not None and (self.starts is None or any(spec <= satisfied for spec in self.starts))
            found = self.outcomes[combination] = (tuple(rule_of), tuple(value_of), can_start)
        return found


def _attr_id(key: Any) -> int | None:
    """The attribute id spaCy's Matcher reads for a token pattern key; None for OP and extensions."""
    name = key.upper() if isinstance(key, str) else key
    if name in ("OP", "_"):
        return None
    name = {"TEXT": "ORTH", "IS_SENT_START": "SENT_START"}.get(name, name)
    return IDS.get(name) if isinstance(name, str) else name


def _supported(spec: dict) -> bool:
    """Is every key of a token pattern an attribute `Doc.to_array` reads as the Matcher does?"""
    for key in spec:
        attr = _attr_id(key)
        if attr is None or attr == SENT_START or not (attr in TOKEN_LEVEL or attr in LEXICAL or attr < FLAG_LIMIT):
            return False
    return True


def compile_rules(ruler: AttributeRuler) -> _Rules | None:
    """The ruler's rules for the bulk path, or None when it must run as spaCy runs it."""
    if any(set(attrs) - set(SETTABLE) for attrs in ruler.attrs):
        return None  # a rule sets a lexeme attribute, an extension, heads or entities
    single, multi, starts = [], [], []
    for rule in range(len(ruler.attrs)):
        on_match, patterns = ruler.matcher.get(str(rule))
        if on_match is not None:
            return None
        index = ruler.indices[rule]
        if all(len(p) == 1 and _supported(p[0]) for p in patterns):
            if index not in (0, -1):
                return None  # spaCy raises for it: let it
            single.append((rule, [p[0] for p in patterns]))
            continue
        multi.append((rule, patterns))
        for p in patterns:
            if any(_attr_id(key) is None and str(key).upper() == "OP" for spec in p for key in spec) \
                    or not -len(p) <= index < len(p):
                return None  # a quantifier (the rule's length varies), or an index spaCy raises for
            if starts is not None and _supported(p[0]):
                starts.append(p[0])
            else:
                starts = None  # cannot tell which tokens start it: run it on every Doc
    return _Rules(ruler, single, multi, starts)


class BulkAttributeRuler(AttributeRuler):
    """spaCy's AttributeRuler (same patterns, same results, same serialization), applied over
    arrays where its rules allow (module docstring); otherwise exactly spaCy's own."""

    def __init__(self, vocab, name: str = "attribute_ruler", *, validate: bool = False, scorer: Any = attribute_ruler_score):
        super().__init__(vocab, name, validate=validate, scorer=scorer)
        self._rules: _Rules | None = None
        self._compiled = False

    def clear(self) -> None:
        super().clear()
        self._compiled = False

    def add(self, patterns, attrs: dict, index: int = 0) -> None:
        super().add(patterns, attrs, index)
        self._compiled = False

    def rules(self) -> _Rules | None:
        if not self._compiled:
            self._rules, self._compiled = compile_rules(self), True
        return self._rules

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        error_handler = self.get_error_handler()
        for batch in minibatch(stream, batch_size):
            rules = self.rules()
            try:
                if rules is None:
                    for doc in batch:
                        self.set_annotations(doc, self.match(doc))
                else:
                    self._apply(rules, batch)
            except Exception as exc:
                error_handler(self.name, self, batch, exc)
            yield from batch

    def _apply(self, rules: _Rules, docs: list[Doc]) -> None:
        docs = [doc for doc in docs if len(doc)]
        if not docs or not rules.settable:
            return
        lengths = [len(doc) for doc in docs]
        table = np.concatenate([doc.to_array([ORTH, SPACY, *rules.tested]) for doc in docs])
        classes = [rules.classes(c, table[:, 2 + c], table[:, 0], table[:, 1]) for c in range(len(rules.tested))]
        # one number per combination of classes (mixed radix), to find the distinct ones
        radix = [len(sets) for sets in rules.class_conditions]
        if math.prod(radix) < 2**62:
            code = np.zeros(len(table), dtype=np.int64)
            for column, n in zip(classes, radix):
                code = code * n + column
            _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        else:
            _, first, inverse = np.unique(np.stack(classes, axis=1), axis=0, return_index=True, return_inverse=True)
        outcomes = [rules.outcome(tuple(int(column[i]) for column in classes)) for i in first.tolist()]
        inverse = inverse.reshape(-1)
        token_rule = np.array([o[0] for o in outcomes], dtype=np.int64).reshape(len(outcomes), -1)[inverse]
        token_value = np.array([o[1] for o in outcomes], dtype=np.uint64).reshape(len(outcomes), -1)[inverse]
        token_start = np.array([o[2] for o in outcomes], dtype=bool)[inverse]
        start = 0
        for doc, n in zip(docs, lengths):
            rows = slice(start, start + n)
            start += n
            doc_rule, doc_value = token_rule[rows], token_value[rows]
            starts = np.flatnonzero(token_start[rows])
            if len(starts):
                doc_rule, doc_value = doc_rule.copy(), doc_value.copy()
                self._apply_multi(rules, doc, starts, doc_rule, doc_value)
            if (doc_rule < 0).all():
                continue
            values = doc.to_array(rules.settable).reshape(n, -1)
            doc.from_array(rules.settable, np.where(doc_rule >= 0, doc_value, values))

    def _apply_multi(self, rules: _Rules, doc: Doc, starts: np.ndarray, rule_of: np.ndarray, value_of: np.ndarray) -> None:
        """The rules of longer patterns, by spaCy's Matcher: on the whole Doc, or where the first
        tokens tell where a match can start, on the stretches of at most the longest pattern from
        there (a match lies within one; a match within a stretch is one in the Doc)."""
        if rules.starts is None:
            stretches = [(0, len(doc))]
        else:
            stretches = []
            for start in starts.tolist():
                end = min(start + rules.longest, len(doc))
                if stretches and start <= stretches[-1][1]:
                    stretches[-1] = (stretches[-1][0], max(end, stretches[-1][1]))
                else:
                    stretches.append((start, end))
        for first, last in stretches:
            for match_id, start, end in rules.multi(doc[first:last], allow_missing=True, as_spans=False):
                rule = rules.multi_rule[match_id]
                index = rules.indices[rule]
                token = first + (start + index if index >= 0 else end + index)
                for col, value in rules.sets[rule]:
                    if rule > rule_of[token, col]:
                        rule_of[token, col], value_of[token, col] = rule, value


@Language.factory(ATTRIBUTE_RULER, default_config={"validate": False, "scorer": {"@scorers": "spacy.attribute_ruler_scorer.v1"}})
def make_bulk_attribute_ruler(nlp: Language, name: str, validate: bool, scorer: Any) -> BulkAttributeRuler:
    return BulkAttributeRuler(nlp.vocab, name, validate=validate, scorer=scorer)


# ---------------------------------------------------------------- lemmatizer


class BulkLemmatizer:
    """The language's own Lemmatizer (`self.lemmatizer`, same tables and results), applied once per
    distinct (ORTH, POS, MORPH) of a batch; any other attribute is the wrapped lemmatizer's.

    A rule lemmatizer tests candidate forms for membership in its `lemma_index` lists, one scan of
    a list per test; the keys not seen before are lemmatized by a second instance of the same class
    whose index holds the same entries as sets (membership and emptiness are all spaCy's
    `rule_lemmatize` asks of it), so each test is a lookup.
    """

    def __init__(self, lemmatizer: Lemmatizer):
        self.lemmatizer = lemmatizer
        self.name = lemmatizer.name
        self._lemmas: dict[tuple[int, int, int], str] = {}
        self._indexed: Lemmatizer | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "lemmatizer":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.lemmatizer, name)

    def _reset(self) -> None:
        self._lemmas.clear()
        self._indexed = None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        self._reset()
        self.lemmatizer.initialize(*args, **kwargs)

    def from_bytes(self, *args: Any, **kwargs: Any) -> BulkLemmatizer:
        self._reset()
        self.lemmatizer.from_bytes(*args, **kwargs)
        return self

    def from_disk(self, *args: Any, **kwargs: Any) -> BulkLemmatizer:
        self._reset()
        self.lemmatizer.from_disk(*args, **kwargs)
        return self

    def indexed(self) -> Lemmatizer:
        """The lemmatizer that computes new keys: a copy with set-valued `lemma_index` where the
        rule lemmatizer is spaCy's own, else the wrapped one."""
        if self._indexed is None:
            self._indexed = self.lemmatizer
            lem = self.lemmatizer
            if lem.mode == "rule" and type(lem).rule_lemmatize is Lemmatizer.rule_lemmatize and "lemma_index" in lem.lookups:
                lookups = Lookups()
                for name in lem.lookups.tables:
                    table = lem.lookups.get_table(name)
                    if name == "lemma_index":
                        as_sets = Table(name=name)
                        for key, forms in table.items():
                            as_sets[key] = frozenset(forms)
                        table = as_sets
                    lookups.set_table(name, table)
                indexed = type(lem)(lem.vocab, None, lem.name, mode=lem.mode, overwrite=lem.overwrite)
                indexed.initialize(lookups=lookups)
                self._indexed = indexed
        return self._indexed

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        error_handler = self.lemmatizer.get_error_handler()
        for batch in minibatch(stream, batch_size):
            try:
                self._set_lemmas(batch)
            except Exception as exc:
                error_handler(self.name, self, batch, exc)
            yield from batch

    def _set_lemmas(self, docs: list[Doc]) -> None:
        lemmatizer = self.lemmatizer
        required, _ = lemmatizer.get_lookups_config(lemmatizer.mode)
        if any(t not in lemmatizer.lookups for t in required):  # as Lemmatizer.__call__ refuses to run
            raise ValueError(Errors.E1004.format(mode=lemmatizer.mode, tables=required, found=lemmatizer.lookups.tables))
        docs = [doc for doc in docs if len(doc)]
        if not docs:
            return
        columns = [doc.to_array([ORTH, POS, MORPH, LEMMA]) for doc in docs]
        table = np.concatenate(columns)
        todo = np.ones(len(table), dtype=bool) if lemmatizer.overwrite else table[:, 3] == 0
        if not todo.any():
            return
        rows = np.flatnonzero(todo)
        unique, first, inverse = np.unique(table[rows, :3], axis=0, return_index=True, return_inverse=True)
        keys = [tuple(k) for k in unique.tolist()]
        missing = [i for i, k in enumerate(keys) if k not in self._lemmas]
        if missing:
            if len(self._lemmas) + len(missing) > MAX_CACHED:  # an open vocabulary: start over rather than grow
                self._lemmas.clear()
                self.indexed().cache.clear()  # spaCy's own per-key cache: bounded with ours
                missing = list(range(len(keys)))
            lengths = np.array([len(doc) for doc in docs])
            starts = np.cumsum(lengths) - lengths
            token_rows = rows[first[missing]]
            doc_of = np.searchsorted(starts, token_rows, side="right") - 1
            lemmatize = self.indexed().lemmatize
            for i, d, r in zip(missing, doc_of.tolist(), token_rows.tolist()):
                self._lemmas[keys[i]] = lemmatize(docs[d][int(r - starts[d])])[0]
        strings = lemmatizer.vocab.strings
        hashes = np.array([strings.add(self._lemmas[k]) for k in keys], dtype=np.uint64)
        table[rows, 3] = hashes[inverse.reshape(-1)]
        start = 0
        for doc, column in zip(docs, columns):
            lemmas = table[start:start + len(doc), 3]
            start += len(doc)
            if not np.array_equal(lemmas, column[:, 3]):
                doc.from_array([LEMMA], lemmas)


@Language.factory(LEMMATIZER, assigns=["token.lemma"], default_config={"mode": "rule", "overwrite": False})
def make_bulk_lemmatizer(nlp: Language, name: str, mode: str, overwrite: bool) -> BulkLemmatizer:
    return BulkLemmatizer(nlp.create_pipe("lemmatizer", name=name, config={"model": None, "mode": mode, "overwrite": overwrite}))

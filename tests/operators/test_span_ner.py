"""The default pipeline's entity recognizer (operators/span_ner.py): its model's gradients, what it
learns and writes, and the missing-annotation rule."""

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model, Ops
from thinc.types import Ragged

from operators.span_ner import FACTORY, sentence_ngram_suggester, span_endpoint_scorer

PEOPLE = ["Alice Smith", "Bob", "Carol Jones", "Dan"]
PLACES = ["Paris", "New York", "Oslo"]


def _fake_tok2vec(arrays: list[np.ndarray], grads: dict) -> Model:
    def forward(model, docs, is_train):
        def backprop(d_arrays):
            grads["X"] = d_arrays
            return []

        return [a.copy() for a in arrays], backprop

    return Model("fake_tok2vec", forward, dims={"nO": arrays[0].shape[1]})


def test_span_scorer_gradients_match_finite_differences():
    """Every parameter's and the token vectors' gradients, for a cross-entropy over the softmax
    (spaCy's convention: backprop receives the logits' gradient), in float64."""
    rng = np.random.default_rng(0)
    nlp = spacy.blank("en")
    docs = [nlp("a b c d e f"), nlp("g h i")]
    arrays = [rng.normal(size=(len(d), 5)) for d in docs]
    grads: dict = {}
    model = span_endpoint_scorer(_fake_tok2vec(arrays, grads), hidden_width=3, maxout_pieces=2, max_length=3)
    model.ops = Ops(np)  # float64 arithmetic: BLIS's gemm takes float32 only
    spans = Ragged(np.array([[0, 1], [1, 4], [2, 6], [0, 6], [0, 2], [1, 3]], dtype="int32"),
                   np.array([4, 2], dtype="int32"))
    model.initialize(X=(docs, spans), Y=np.zeros((6, 4)))
    for name in ("W", "b", "D", "Wo", "bo"):
        model.set_param(name, rng.normal(size=model.get_param(name).shape))
    target = rng.normal(size=(6, 4))
    target -= target.mean(axis=1, keepdims=True)  # rows sum to 0: sum(target * log softmax) = sum(target * logits)

    def loss() -> float:
        return float((np.log(model((docs, spans), is_train=False)[0]) * target).sum())

    _, backprop = model((docs, spans), is_train=True)
    backprop(target)
    eps = 1e-6

    def numeric(values: np.ndarray, set_values) -> np.ndarray:
        out = np.zeros_like(values)
        for i in np.ndindex(values.shape):
            old = values[i]
            values[i] = old + eps
            set_values(values)
            up = loss()
            values[i] = old - eps
            set_values(values)
            down = loss()
            values[i] = old
            set_values(values)
            out[i] = (up - down) / (2 * eps)
        return out

    for name in ("W", "b", "D", "Wo", "bo"):
        values = model.get_param(name).copy()
        expected = numeric(values, lambda v, name=name: model.set_param(name, v))
        assert np.abs(model.get_grad(name)).max() > 0.1
        np.testing.assert_allclose(model.get_grad(name), expected, atol=1e-6)
    for k, array in enumerate(arrays):
        expected = numeric(array, lambda v: None)
        np.testing.assert_allclose(grads["X"][k], expected, atol=1e-6)


def _sentence(nlp, rng) -> Example:
    """'<person> flew to <place> .' and the like, with gold entities."""
    person, place = PEOPLE[rng.integers(len(PEOPLE))], PLACES[rng.integers(len(PLACES))]
    pattern = ["{p} flew to {l} .", "In {l} , {p} met friends .", "{p} likes {l} ."][rng.integers(3)]
    text = pattern.format(p=person, l=place)
    doc = nlp.make_doc(text)
    ref = doc.copy()
    ref.ents = [ref.char_span(text.index(person), text.index(person) + len(person), "PER"),
                ref.char_span(text.index(place), text.index(place) + len(place), "LOC")]
    return Example(doc, ref)


@pytest.fixture(scope="module")
def trained():
    spacy.util.fix_random_seed(0)
    rng = np.random.default_rng(0)
    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, name="ner")
    examples = [_sentence(nlp, rng) for _ in range(40)]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(15):
        for i in range(0, len(examples), 8):
            nlp.update(examples[i : i + 8], sgd=optimizer, drop=0.0)
    return nlp, examples


def test_learns_entities_and_writes_doc_ents(trained, tmp_path):
    nlp, examples = trained
    assert nlp.get_pipe("ner").labels == ("LOC", "PER")  # from the gold entities
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] > 0.95  # the ner scorer: entities, not spans
    doc = nlp("In New York , Carol Jones met friends .")
    assert [(e.text, e.label_) for e in doc.ents] == [("New York", "LOC"), ("Carol Jones", "PER")]
    assert not doc.spans  # the candidates' span group is not left on the doc
    nlp.to_disk(tmp_path / "p")
    again = spacy.load(tmp_path / "p")  # the factory and architecture resolve by name
    assert [(e.text, e.label_) for e in again("In New York , Carol Jones met friends .").ents] == [("New York", "LOC"), ("Carol Jones", "PER")]


def test_no_loss_on_spans_touching_tokens_with_missing_annotation(trained):
    nlp, _ = trained
    ner = nlp.get_pipe("ner")
    doc = nlp.make_doc("Bob flew to Oslo .")
    known = doc.copy()
    known.set_ents([known.char_span(0, 3, "PER")], default="outside")  # Oslo wrongly outside
    unknown = doc.copy()
    unknown.set_ents([unknown.char_span(0, 3, "PER")], missing=[unknown[3:4]], default="outside")
    indices = ner.suggester([doc], ops=ner.model.ops)
    scores = ner.model.predict(([doc], indices))
    _, d_known = ner.get_loss([Example(doc, known)], (indices, scores))
    _, d_unknown = ner.get_loss([Example(doc, unknown)], (indices, scores))
    bounds = [tuple(row) for row in indices.dataXd.tolist()]
    touching = [i for i, (s, e) in enumerate(bounds) if s <= 3 < e]
    others = [i for i in range(len(bounds)) if i not in touching]
    assert touching and np.abs(d_known[touching]).sum() > 0
    assert np.abs(d_unknown[touching]).sum() == 0
    np.testing.assert_array_equal(d_unknown[others], d_known[others])


def test_a_doc_without_tokens(trained):
    nlp, _ = trained
    assert list(nlp(Doc(nlp.vocab, words=[])).ents) == []


def test_candidates_stay_within_sentences():
    nlp = spacy.blank("en")
    two = nlp("a b c d")
    for token in two:
        token.is_sent_start = token.i in (0, 2)
    unsplit = nlp("x y")  # no sentence boundaries: every n-gram
    empty = nlp.make_doc("")
    suggest = sentence_ngram_suggester(1, 3)
    spans = suggest([two, empty, unsplit])
    assert spans.lengths.tolist() == [6, 0, 3]
    assert spans.dataXd.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [0, 2], [2, 4], [0, 1], [1, 2], [0, 2]]
    assert suggest([two, empty]).lengths.tolist() == [6, 0]  # a trailing empty doc
    assert suggest([]).lengths.tolist() == []


def test_prediction_in_pieces_equals_the_training_forward(trained, monkeypatch):
    import operators.span_ner as span_ner

    nlp, _ = trained
    ner = nlp.get_pipe("ner")
    docs = [nlp.make_doc(t) for t in ("Bob flew to Oslo .", "In Paris , Alice Smith met friends .", "Dan .")]
    indices = ner.suggester(docs, ops=ner.model.ops)
    whole, _ = ner.model(([d.copy() for d in docs], indices), is_train=True)
    monkeypatch.setattr(span_ner, "SPAN_PIECE", 7)
    pieces = ner.model.predict((docs, indices))
    assert len(indices.dataXd) > 2 * 7
    np.testing.assert_array_equal(pieces, whole)

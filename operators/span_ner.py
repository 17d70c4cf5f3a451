"""The default pipeline's entity recognizer: every n-gram of 1-6 tokens within a sentence is a
candidate entity, scored by a span classifier (spaCy's `spancat_singlelabel`), and the most
probable non-overlapping ones become `doc.ents`.

It replaces spaCy's transition-based `ner` as the component named "ner", so everything that reads
entities (`doc.ents`, the entities table, `exclude=("ner",)`) is unchanged. Its model,
`corpus_nlp.SpanEndpointScorer.v1`, costs about what the transition-based recognizer costs per
token: the span's hidden layer is decomposed so that its weights multiply each token once.

Registered with spaCy through the `spacy_factories` and `spacy_architectures` entry points in
pyproject.toml, so a plain `spacy.load` of the assembled pipeline finds them.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from spacy.language import Language
from spacy.pipeline.spancat import SpanCategorizer, build_ngram_range_suggester
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Config, Model, Ops, get_current_ops, glorot_uniform_init
from thinc.types import Floats2d, Ragged

FACTORY = "corpus_nlp_span_ner"
SPAN_PIECE = 32768  # candidate spans scored at a time in prediction (about 16 MB per float32 temporary)

DEFAULT_MODEL = Config().from_str(
    """
[model]
@architectures = "corpus_nlp.SpanEndpointScorer.v1"
hidden_width = 64
maxout_pieces = 2
max_length = 6

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true
pretrained_vectors = null
"""
)["model"]


@registry.architectures("corpus_nlp.SpanEndpointScorer.v1")
def span_endpoint_scorer(
    tok2vec: Model[list[Doc], list[Floats2d]], hidden_width: int = 64, maxout_pieces: int = 2, max_length: int = 6
) -> Model[tuple[list[Doc], Ragged], Floats2d]:
    """Label probabilities (the last column: no entity) of candidate spans `(docs, [start, end) per
    doc)`, for spaCy's span categorizer.

    A span's hidden layer is maxout(A·first + B·last + C·mean(its tokens) + D[width] + b), then a
    softmax layer: spaCy's span categorizer over a (first, last, mean) reduction, rewritten with A,
    B and C applied to each token once (C·mean = mean of C·token), so that each of the n-grams a
    token starts costs a few vector sums. Widths above `max_length` share its row of D.
    """
    return Model(
        "span_endpoint_scorer",
        _span_forward,
        init=_span_init,
        layers=[tok2vec],
        dims={"nO": None, "nI": None, "nH": hidden_width, "nP": maxout_pieces, "max_length": max_length},
        params={"W": None, "b": None, "D": None, "Wo": None, "bo": None},
        refs={"tok2vec": tok2vec},
    )


def _span_init(model: Model, X=None, Y=None) -> None:
    tok2vec = model.get_ref("tok2vec")
    if X is not None:
        tok2vec.initialize(X=X[0])
    if Y is not None:
        model.set_dim("nO", Y.shape[1])
    n_in = tok2vec.get_dim("nO")
    model.set_dim("nI", n_in)
    n_hidden = model.get_dim("nH") * model.get_dim("nP")
    ops = model.ops
    model.set_param("W", glorot_uniform_init(ops, (3 * n_hidden, n_in)))
    model.set_param("b", ops.alloc1f(n_hidden))
    model.set_param("D", ops.alloc2f(model.get_dim("max_length"), n_hidden))
    model.set_param("Wo", ops.alloc2f(model.get_dim("nO"), model.get_dim("nH")))
    model.set_param("bo", ops.alloc1f(model.get_dim("nO")))


def _span_forward(model: Model, inputs: tuple[list[Doc], Ragged], is_train: bool):
    docs, spans = inputs
    ops, xp = model.ops, model.ops.xp
    n_h, n_p = model.get_dim("nH"), model.get_dim("nP")
    W, b, D, Wo, bo = (model.get_param(name) for name in ("W", "b", "D", "Wo", "bo"))
    tokvecs, backprop_tokvecs = model.get_ref("tok2vec")(docs, is_train)
    doc_lengths = [len(doc) for doc in docs]
    X = ops.flatten(tokvecs)
    # the spans' [start, end) as rows of X
    doc_starts = np.concatenate([[0], np.cumsum(doc_lengths)[:-1]]).astype("int32")
    bounds = ops.to_numpy(spans.dataXd).reshape(-1, 2) + np.repeat(doc_starts, ops.to_numpy(spans.lengths))[:, None]
    starts, ends = xp.asarray(bounds[:, 0]), xp.asarray(bounds[:, 1])
    widths = (ends - starts).astype(X.dtype)[:, None]
    width_rows = xp.minimum(ends - starts, D.shape[0]) - 1
    k = n_h * n_p
    P = ops.gemm(X, W, trans2=True)  # per token: its first, last and inside parts
    # sums over spans as differences of a running sum, in float64: over a whole batch of tokens a
    # float32 running sum would lose a span's own digits
    inside = xp.concatenate([xp.zeros((1, k), dtype="float64"), xp.cumsum(P[:, 2 * k :], axis=0, dtype="float64")])

    def hidden(rows: slice):  # the maxout's inputs, (spans, n_h, n_p)
        first, end = starts[rows], ends[rows]
        mean = ((inside[end] - inside[first]) / widths[rows]).astype(P.dtype)
        return (P[first, :k] + P[end - 1, k : 2 * k] + mean + D[width_rows[rows]] + b).reshape(-1, n_h, n_p)

    if not is_train:  # a batch has several spans per token: bound the memory by scoring them in pieces
        pieces = [ops.softmax(ops.gemm(_maxout(hidden(slice(i, i + SPAN_PIECE)), xp), Wo, trans2=True) + bo)
                  for i in range(0, len(bounds), SPAN_PIECE)]
        return (xp.concatenate(pieces) if pieces else ops.alloc2f(0, Wo.shape[0])), _prediction_only

    pre = hidden(slice(None))
    H = _maxout(pre, xp)
    winners = pre.argmax(axis=-1)[..., None] == xp.arange(n_p)  # the piece each maxout unit took
    probs = ops.softmax(ops.gemm(H, Wo, trans2=True) + bo)

    def backprop(d_logits: Floats2d):
        # spaCy's convention (thinc's Softmax): the gradient of the logits under cross-entropy
        model.inc_grad("Wo", ops.gemm(d_logits, H, trans1=True))
        model.inc_grad("bo", d_logits.sum(axis=0))
        d_pre = (winners * ops.gemm(d_logits, Wo)[..., None]).reshape(-1, k).astype(P.dtype)
        model.inc_grad("b", d_pre.sum(axis=0))
        d_D, d_first, d_last = xp.zeros_like(D), xp.zeros((len(X), k), P.dtype), xp.zeros((len(X), k), P.dtype)
        ops.scatter_add(d_D, width_rows, d_pre)  # in place
        ops.scatter_add(d_first, starts, d_pre)
        ops.scatter_add(d_last, ends - 1, d_pre)
        model.inc_grad("D", d_D)
        d_mean = d_pre / widths  # each token of a span gets its share: a difference array, summed
        steps = xp.zeros((len(X) + 1, k), P.dtype)
        ops.scatter_add(steps, starts, d_mean)
        ops.scatter_add(steps, ends, -d_mean)
        dP = xp.concatenate([d_first, d_last, xp.cumsum(steps, axis=0)[:-1]], axis=1)
        model.inc_grad("W", ops.gemm(dP, X, trans1=True))
        return backprop_tokvecs(ops.unflatten(ops.gemm(dP, W), doc_lengths))

    return probs, backprop


def _maxout(pre, xp):
    """max over the last (pieces) axis; numpy's reduction over a short last axis is several times
    slower than these elementwise maxima of its slices"""
    out = pre[..., 0]
    for piece in range(1, pre.shape[-1]):
        out = xp.maximum(out, pre[..., piece])
    return out


def _prediction_only(d_logits: Floats2d):
    raise ValueError("span_endpoint_scorer: backprop needs a forward pass with is_train=True")


@registry.misc("corpus_nlp.sentence_ngram_suggester.v1")
def sentence_ngram_suggester(min_size: int, max_size: int) -> Callable:
    """Every n-gram of `min_size`..`max_size` tokens that lies within one sentence (where the doc
    has sentence boundaries; else every n-gram): an entity never crosses a sentence start, as with
    spaCy's transition-based recognizer."""
    ngrams = build_ngram_range_suggester(min_size, max_size)

    def suggest(docs: Iterable[Doc], *, ops: Ops | None = None) -> Ragged:
        docs = list(docs)
        ops = ops or get_current_ops()
        candidates = ngrams(docs, ops=ops)
        bounds = ops.to_numpy(candidates.dataXd).reshape(-1, 2)
        lengths = ops.to_numpy(candidates.lengths)
        keep = np.ones(len(bounds), dtype=bool)
        first = 0
        for doc, n in zip(docs, lengths):
            if n and doc.has_annotation("SENT_START"):
                sentence = np.cumsum(doc.to_array("SENT_START") == 1)  # each token's sentence number
                rows = bounds[first : first + n]
                keep[first : first + n] = sentence[rows[:, 0]] == sentence[rows[:, 1] - 1]
            first += n
        kept_lengths = np.bincount(np.repeat(np.arange(len(docs)), lengths)[keep], minlength=len(docs))
        return Ragged(ops.asarray2i(bounds[keep].astype("int32")), ops.asarray1i(kept_lengths.astype("int32")))

    return suggest


class SpanEntityRecognizer(SpanCategorizer):
    """spaCy's single-label span categorizer that learns from and writes `doc.ents`.

    Gold entities come from `reference.ents`; candidate spans touching a token whose entity
    annotation is missing (IOB 0) get no loss, as spaCy's transition-based recognizer treats them.
    """

    def set_annotations(self, docs: Iterable[Doc], indices_scores) -> None:
        super().set_annotations(docs, indices_scores)
        for doc in docs:
            doc.ents = list(doc.spans[self.key])  # best-first, non-overlapping (allow_overlap=False)
            del doc.spans[self.key]

    def _get_aligned_spans(self, eg: Example):
        return eg.get_aligned_spans_y2x(eg.reference.ents, allow_overlap=True)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Language | None = None,
                   labels: list[str] | None = None) -> None:
        if labels is None:
            labels = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        super().initialize(get_examples, nlp=nlp, labels=labels)

    def get_loss(self, examples: Iterable[Example], spans_scores: tuple[Ragged, Floats2d]) -> tuple[float, Floats2d]:
        examples = list(examples)
        loss, d_scores = super().get_loss(examples, spans_scores)
        spans = spans_scores[0]
        lengths = self.model.ops.to_numpy(spans.lengths)
        bounds = self.model.ops.to_numpy(spans.dataXd).reshape(-1, 2)
        unknown = []
        first = 0
        for eg, n in zip(examples, lengths):
            missing = np.array([iob in (0, None) for iob in eg.get_aligned("ENT_IOB")], dtype="int32")
            seen = np.concatenate([[0], np.cumsum(missing)])
            rows = bounds[first : first + n]
            unknown.append(first + np.flatnonzero(seen[rows[:, 1]] > seen[rows[:, 0]]))
            first += n
        unknown_rows = np.concatenate(unknown) if unknown else np.zeros(0, dtype="int64")
        if unknown_rows.size:
            d_scores[self.model.ops.asarray(unknown_rows)] = 0.0
            loss = float((d_scores**2).sum())
        return loss, d_scores


@Language.factory(
    FACTORY,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "suggester": {"@misc": "corpus_nlp.sentence_ngram_suggester.v1", "min_size": 1, "max_size": 6},
        "negative_weight": 1.0,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_span_entity_recognizer(nlp: Language, name: str, model: Model, suggester: Callable, negative_weight: float,
                                scorer: Callable) -> SpanEntityRecognizer:
    """`doc.ents` from a span classifier over every n-gram the suggester proposes."""
    return SpanEntityRecognizer(
        nlp.vocab, model, suggester, name,
        add_negative_label=True, spans_key=f"{name}_candidates", negative_weight=negative_weight,
        allow_overlap=False, max_positive=1, threshold=None, scorer=scorer,
    )

"""Sentence vectors pooled from the pipeline's shared embedding, computed where the tensors live.

Only sums leave the device: for spacy-transformers pipelines the bulk forward pass
(operators/transformer.py) copies each span's sums to the host once per batch; otherwise the pooled
(n_sents, width) array is copied per doc. Afterwards the embedding is released
from the Doc (`release_embedding`), so a batch's padded hidden states do not outlive it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from spacy.tokens import Doc
from thinc.backends import get_array_ops
from thinc.util import get_array_module

from .config import Pooling
from .doc_arrays import SPANS_KEY, TEXT_KEY, sentence_token_starts
from .transformer import SPAN_SUMS_KEY


class Embedded(Protocol):
    """What pooling needs to know of a loaded pipeline (operators.pipeline.Pipeline has it)."""

    embedding: str  # "transformer", "curated_transformer" or "tok2vec"
    span_getter: Any  # CappedSentenceSpans (spacy-transformers pipelines): its tokenizer's special ids


def segment_mean(X, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of consecutive row groups of X (numpy or cupy), returned on the host.

    Returns (means float32 (n, width), valid bool (n,)); a group of length 0 is invalid and zero.
    """
    ops = get_array_ops(X)
    X = ops.xp.ascontiguousarray(X, dtype="float32")  # CupyOps.reduce_* need float32 and int32
    lengths32 = ops.asarray1i(lengths.astype(np.int32))
    sums = ops.to_numpy(ops.reduce_sum(X, lengths32))
    return _divide(sums, lengths)


def _host(array) -> np.ndarray:
    """A numpy copy of a numpy or cupy array (wordpiece ids and masks are small)."""
    return get_array_ops(array).to_numpy(array) if not isinstance(array, np.ndarray) else array


def _divide(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = counts > 0
    means = sums / np.maximum(counts, 1)[:, None]
    return means.astype(np.float32, copy=False), valid


def pool_tok2vec(doc: Doc) -> tuple[np.ndarray, np.ndarray]:
    return segment_mean(doc.tensor, np.diff(sentence_token_starts(doc)))


def pool_curated(doc: Doc) -> tuple[np.ndarray, np.ndarray]:
    """Curated transformers store pieces per token (special tokens already removed)."""
    state = doc._.trf_data.last_hidden_layer_state
    pieces_per_token = _host(state.lengths).astype(np.int64)
    token_starts = sentence_token_starts(doc)
    cumulative = np.concatenate([[0], np.cumsum(pieces_per_token)])
    return segment_mean(state.dataXd, np.diff(cumulative[token_starts]))


def pool_transformer(doc: Doc, mode: Pooling, special_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """spacy-transformers: average the wordpiece rows of each sentence's span(s).

    mode "mean" takes every row of the span window, special tokens included (sentence-
    transformers' mean pooling); "mean_content" drops the special tokens. Padding never counts.
    The bulk forward (operators/transformer.py) leaves each span's sums on the host; without it
    they are computed here from the doc's hidden states, on their device.
    """
    spans = doc.user_data.get(SPANS_KEY)
    sent_starts = sentence_token_starts(doc)
    n_sents = len(sent_starts) - 1
    if spans is None:
        raise RuntimeError("no transformer spans on this doc; was the span getter replaced?")
    bulk = doc.user_data.get(SPAN_SUMS_KEY)
    if bulk is not None:
        span_sums, span_counts = bulk[mode]
    else:
        span_sums, span_counts = _span_sums(doc, mode, special_ids, len(spans))
    # spans never cross sentences and come in order: each span belongs to its start's sentence
    span_sent = np.searchsorted(sent_starts, spans[:, 0], side="right") - 1
    sums = np.zeros((n_sents, span_sums.shape[1]), dtype=np.float32)
    np.add.at(sums, span_sent, span_sums)
    counts = np.bincount(span_sent, weights=span_counts, minlength=n_sents)
    return _divide(sums, counts)


def _span_sums(doc: Doc, mode: Pooling, special_ids: np.ndarray, n_spans: int) -> tuple[np.ndarray, np.ndarray]:
    """Each span's sum of wordpiece rows and their count, from doc._.trf_data (on its device)."""
    trf_data = doc._.trf_data
    hidden = trf_data.model_output.last_hidden_state  # (n_spans, padded_len, width), on device
    if hidden.shape[0] != n_spans:
        raise RuntimeError("transformer output does not match the spans corpus-nlp set; was the span getter replaced?")
    xp = get_array_module(hidden)
    mask = _host(trf_data.wordpieces.attention_mask).astype(bool)
    if mode == "mean_content":
        mask &= ~np.isin(_host(trf_data.wordpieces.input_ids), special_ids)
    weights = xp.asarray(mask, dtype="float32")
    span_sums = xp.einsum("slw,sl->sw", hidden.astype("float32", copy=False), weights)
    return get_array_ops(span_sums).to_numpy(span_sums), mask.sum(axis=1)


def pool_sentences(pipeline: Embedded, doc: Doc, mode: Pooling) -> tuple[np.ndarray, np.ndarray]:
    """(vectors float32 (n_sents, width), valid (n_sents,)) for the doc's sentences."""
    if pipeline.embedding == "transformer":
        tokenizer = pipeline.span_getter.tokenizer
        return pool_transformer(doc, mode, np.asarray(tokenizer.all_special_ids, dtype=np.int64))
    if pipeline.embedding == "curated_transformer":
        return pool_curated(doc)
    return pool_tok2vec(doc)


def release_embedding(doc: Doc) -> None:
    """Drop the doc's references to device tensors (the padded batch output, the token tensor)."""
    if Doc.has_extension("trf_data") and doc._.trf_data is not None:
        doc._.trf_data = None
    doc.tensor = np.empty((0,), dtype=np.float32)
    for key in (SPANS_KEY, TEXT_KEY, SPAN_SUMS_KEY):
        doc.user_data.pop(key, None)

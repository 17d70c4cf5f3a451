"""The prediction pass of a spacy-transformers `Transformer`, in bulk: same outputs, less work.

spacy-transformers' `TransformerModel` forward spends most of its time on the host, in per-token
and per-wordpiece Python: a Token object and a
dict entry per token to align wordpieces (twice: again to split the batch by doc), a Python string
per wordpiece, lists of lists turned into arrays, and one padded forward call per sub-batch of
~4,096 tokens, padded to its longest span. `BulkTransformerForward` replaces that forward for
prediction and computes the same things with numpy and one Rust tokenizer call:

- spans: one per sentence, capped (`CappedSentenceSpans.ranges`, from `Doc.to_array`);
- wordpieces: the tokenizer's own Rust `encode_batch` over every span of the batch;
- alignment: the character-offset alignment spacy-transformers computes
  (`get_alignment_via_offset_mapping`: a wordpiece belongs to every token whose characters, or the
  one character after it, it covers), as array arithmetic over the whole batch;
- forward: all spans of the batch sorted by length and run in calls of at most `token_budget`
  padded wordpieces (optionally under bf16 autocast), each row written straight into its doc's
  block of one float32 output; no padded copy of the whole batch exists;
- output: one `TransformerData` per doc, as `FullTransformerBatch.split_by_doc` would give it,
  except that a doc's rows are padded to its own longest span, not the batch's (nothing reads the
  padding: listeners follow the alignment, pooling the attention mask). When the transformer's
  config asks for every layer's hidden states (`output_hidden_states`), the scalar mix of them that
  each listening layer mix wants (the default pipeline's tok2vec) is computed in the forward pass
  (`add_mix`) and the batch keeps those and the last layer; with no layer mix registered, every
  layer is kept as spacy-transformers keeps it (`model_output.hidden_states`). The pooler output is
  not kept. On the CPU the batch's output buffer is reused once no doc holds it.

Tags, parses, entities and vectors equal those of spacy-transformers' own path (tested). Training
is not affected: only `predict` (is_train=False) takes this path.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
from spacy.tokens import Doc

from . import errors
from .doc_arrays import doc_text, token_offsets

# doc.user_data: {pooling mode: (sum of each span's wordpiece vectors (n_spans, width), wordpieces summed
# (n_spans,))}, "mean" over every wordpiece of the span's window, "mean_content" without special tokens
SPAN_SUMS_KEY = "corpus_nlp.span_sums"
# on each TransformerData of a bulk pass: its DocAlignment, for BulkListenerPooling
BATCH_ALIGNMENT_ATTR = "corpus_nlp_batch_alignment"


def length_buckets(lengths: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Row indices per forward call: rows sorted by length, at most `token_budget` padded pieces
    per call (a row longer than the budget runs alone)."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order].tolist()
    buckets, start, n = [], 0, len(order)
    while start < n:
        end = start + 1
        while end < n and (end + 1 - start) * sorted_lengths[end] <= token_budget:
            end += 1
        buckets.append(order[start:end])
        start = end
    return buckets


def _ragged_positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items laid out back to back with these lengths: (owner of each position, index within it)."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, within


def char_token_map(idx: np.ndarray, length: np.ndarray, n_chars: int) -> np.ndarray:
    """Token of each character (-1: none), as spacy-transformers builds it for alignment: a token
    owns its characters and the one character after it, unless the next token starts there."""
    owner = np.full(n_chars + 1, -1, dtype=np.int64)
    tokens = np.arange(len(idx))
    owner[idx + length] = tokens  # the character after each token first ...
    token_of_char, within = _ragged_positions(length)
    owner[idx[token_of_char] + within] = token_of_char  # ... then the tokens' own characters win
    return owner


def align_wordpieces(owner: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token, wordpiece) pairs: wordpiece w covers characters [starts[w], ends[w]) of the text
    whose character owners are `owner`; it belongs to every token owning one of them."""
    n = len(owner)
    positions = np.arange(n)
    valid = owner >= 0
    # first owned character at or after each position, last at or before it
    next_owned = np.minimum.accumulate(np.where(valid, positions, n)[::-1])[::-1]
    prev_owned = np.maximum.accumulate(np.where(valid, positions, -1))
    real = ends > starts  # special tokens have empty offsets
    first = np.where(real, next_owned[np.minimum(starts, n - 1)], n)
    last = np.where(real, prev_owned[np.maximum(ends - 1, 0)], -1)
    has = real & (first < ends) & (last >= starts) & (first < n)
    lo = owner[first[has]]
    hi = owner[last[has]]
    counts = hi - lo + 1  # owners never decrease along the text: the tokens between are covered
    wordpiece = np.repeat(np.flatnonzero(has), counts)
    _, step = _ragged_positions(counts)
    return np.repeat(lo, counts) + step, wordpiece


@dataclass
class _Pieces:
    """The wordpieces of a batch's spans, back to back."""

    lengths: np.ndarray  # (n_spans,) wordpieces per span, special tokens included
    ids: np.ndarray  # (n_pieces,)
    offsets: np.ndarray  # (n_pieces, 2) characters in the span's text; (0, 0) for special tokens
    type_ids: np.ndarray | None
    span_char: np.ndarray  # (n_spans,) where each span's text starts in its doc's text


class _Layout:
    """Where each wordpiece's output row goes: each doc has a block of its spans x its longest span."""

    def __init__(self, n_spans: np.ndarray, lengths: np.ndarray):
        self.n_spans = n_spans
        self.span_doc = np.repeat(np.arange(len(n_spans)), n_spans)
        self.span_first = np.cumsum(n_spans) - n_spans
        span_in_doc = np.arange(len(lengths)) - self.span_first[self.span_doc]
        self.doc_width = np.zeros(len(n_spans), dtype=np.int64)
        np.maximum.at(self.doc_width, self.span_doc, lengths)
        self.doc_rows = n_spans * self.doc_width
        self.block_start = np.cumsum(self.doc_rows) - self.doc_rows
        self.wp_span, wp_pos = _ragged_positions(lengths)
        span_row = self.block_start[self.span_doc] + span_in_doc * self.doc_width[self.span_doc]
        self.dst = span_row[self.wp_span] + wp_pos  # row of each wordpiece in the batch's output

    def spans_of(self, doc: int) -> slice:
        return slice(int(self.span_first[doc]), int(self.span_first[doc] + self.n_spans[doc]))


@dataclass
class BatchAlignment:
    """A bulk pass's hidden states and alignment, on their device, rows numbered across the batch."""

    hidden: Any  # (rows, width): every doc's block, back to back
    rows: Any  # (n_aligned,) int32: each token's wordpiece rows, token after token
    lengths: Any  # (n_tokens,) int32: rows per token
    mixed: dict[int, Any] = field(default_factory=dict)  # a layer mix's id -> its (rows, width) mixed states


class DocAlignment(NamedTuple):
    """Where one doc's alignment lies in its batch's."""

    batch: BatchAlignment
    rows: slice  # of batch.rows
    tokens: slice  # of batch.lengths


class BulkListenerPooling:
    """Drop-in forward of spacy-transformers' `trfs2arrays` (a listener's pooling of wordpiece rows
    into token vectors), for prediction over docs of one bulk pass.

    spacy-transformers aligns doc by doc: each doc's alignment goes to the GPU on its own, and a copy
    from host memory waits for the GPU to finish the work queued before it, that of the other
    pipelines on a shared GPU included (one wait per doc and listener). Here the batch's alignment is
    already on the device: one gather and one pooling call for all docs, the same rows in the same
    order, so the same token vectors. Training and docs from elsewhere take the original path.
    """

    def __init__(self, original: Any):
        self.original = original

    def __call__(self, model: Any, trf_datas: list[Any], is_train: bool) -> tuple[Any, Any]:
        refs, batch = bulk_batch(trf_datas, is_train)
        if batch is None:
            return self.original(model, trf_datas, is_train)
        return pool_bulk(model, refs, batch, lambda rows: batch.hidden[rows]), _no_backprop


def bulk_batch(trf_datas: list[Any], is_train: bool) -> tuple[list[DocAlignment | None], Any]:
    """Each doc's alignment in a bulk pass, and the pass's batch if all docs come from that one pass
    (other docs allowed only as spacy-transformers' empty ones: no output, zero rows) and this is
    prediction; else None, and the caller takes spacy-transformers' own path."""
    refs: list[DocAlignment | None] = [getattr(t, BATCH_ALIGNMENT_ATTR, None) for t in trf_datas]
    batch = next((r.batch for r in refs if r is not None), None)
    if (is_train or batch is None or any(r is not None and r.batch is not batch for r in refs)
            or any(r is None and "last_hidden_state" in t.model_output for r, t in zip(refs, trf_datas))):
        return refs, None
    return refs, batch


def pool_bulk(model: Any, refs: list[DocAlignment | None], batch: Any, take: Any) -> list[Any]:
    """Token vectors of the docs of one bulk pass: one gather of the batch's rows (`take(rows)`: the
    hidden state's rows, or a mix of its layers'), one pooling call for all docs, the same rows in
    the same order as spacy-transformers' listener, so the same vectors."""
    from thinc.types import Ragged

    ops, pooling = model.ops, model.layers[0]
    aligned = [r for r in refs if r is not None and r.rows.stop > r.rows.start]
    outputs = iter([])
    if aligned:
        rows = ops.xp.concatenate([batch.rows[r.rows] for r in aligned])
        lengths = ops.xp.concatenate([batch.lengths[r.tokens] for r in aligned])
        pooled = pooling.predict(Ragged(take(rows), lengths))
        outputs = iter(ops.xp.split(pooled, np.cumsum([r.tokens.stop - r.tokens.start for r in aligned])[:-1].tolist()))
    width = batch.hidden.shape[1]
    result = []
    for r in refs:
        if r is None:  # as trfs2arrays: a doc without transformer output gets a (0, 0) array
            result.append(ops.alloc2f(0, 0))
        elif r.rows.stop > r.rows.start:
            result.append(next(outputs))
        else:  # no token aligns to a wordpiece (whitespace only): as spacy-transformers'
            # `_apply_empty_alignment`, one zero row per token
            n = r.tokens.stop - r.tokens.start
            result.append(pooling.predict(Ragged(ops.alloc2f(n, width), ops.alloc1i(n) + 1)))
    return result


class BulkTransformerForward:
    """Drop-in forward (thinc signature) of a spacy-transformers TransformerModel, for prediction."""

    def __init__(self, trf_model: Any, span_getter: Any, device: str, token_budget: int, bf16: bool):
        from spacy_transformers.layers.transformer_model import forward as original_forward

        tokenizer = trf_model.tokenizer
        self.original_forward = original_forward  # training keeps spacy-transformers' own path
        self.hf_model = trf_model.transformer
        self.all_layers = bool(getattr(self.hf_model.config, "output_hidden_states", False))
        self.span_getter = span_getter
        self.device, self.token_budget, self.bf16 = device, token_budget, bf16
        # a private copy of the Rust tokenizer: the Python one sets padding and truncation on its own
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.no_padding()
        self.backend.no_truncation()
        self.pad_id = int(tokenizer.pad_token_id)
        self.pad_type_id = int(getattr(tokenizer, "pad_token_type_id", 0))
        self.type_ids = "token_type_ids" in tokenizer.model_input_names
        self.max_length = int(tokenizer.model_max_length)
        self.id_strings = np.array(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), dtype=object)
        self.special_ids = np.asarray(tokenizer.all_special_ids, dtype=np.int64)
        # seconds spent in `_run` (the forward calls, rows written out, pooling sums copied back; on a
        # GPU that includes waiting for the device): what the Annotator reports as forward time
        self.seconds = 0.0
        # CPU only: the last batch's output buffer, and a weak reference to the array through which
        # its docs see it (see `_output_buffer`)
        self._spare: Any = None
        self._spare_users: weakref.ref | None = None
        # layer mixes of the listening components (`add_mix`): id -> their coefficients, read per batch
        self.mixes: dict[int, Callable[[], list[float]]] = {}

    def add_mix(self, key: int, n_layers: int, coefficients: Callable[[], list[float]]) -> None:
        """Compute a listener's scalar mix of every layer in the forward pass, from `coefficients()`
        (Σ c_l · layer_l, one per hidden state, embeddings first): the batch then keeps the mix and
        the last layer, not every layer. `key` is what the listener finds its mix by in the batch."""
        states = int(self.hf_model.config.num_hidden_layers) + 1
        if not self.all_layers or n_layers != states:
            raise errors.ModelError(f"the transformer gives {states if self.all_layers else 1} hidden states; a layer mix "
                                    f"expects {n_layers} (set output_hidden_states in the transformer's config, and "
                                    "`layers` to its layers + 1)")
        self.mixes[key] = coefficients

    def __call__(self, model: Any, docs: list[Doc], is_train: bool) -> tuple[Any, Any]:
        if is_train:
            return self.original_forward(model, docs, is_train)
        from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
        from thinc.types import Ragged
        from transformers.file_utils import ModelOutput

        doc_texts = [doc_text(doc) for doc in docs]
        offsets = [token_offsets(doc) for doc in docs]  # (char offset, length) of each token
        ranges = [self.span_getter.ranges(doc, idx, length, text) for doc, (idx, length), text in zip(docs, offsets, doc_texts)]
        pieces = self._encode(doc_texts, offsets, ranges)
        layout = _Layout(np.array([len(r) for r in ranges], dtype=np.int64), pieces.lengths)
        content = ~np.isin(pieces.ids, self.special_ids)
        mixes = {key: coefficients() for key, coefficients in self.mixes.items()}
        start = time.perf_counter()
        try:
            hidden, span_sums = self._run(pieces, layout, content, mixes)
        finally:
            self.seconds += time.perf_counter() - start
        content_counts = np.bincount(layout.wp_span[content], minlength=len(pieces.lengths))
        align_rows, per_token = self._align(doc_texts, offsets, pieces, layout)
        for d, doc in enumerate(docs):
            spans = layout.spans_of(d)
            doc.user_data[SPAN_SUMS_KEY] = {
                "mean": (span_sums[0][spans], pieces.lengths[spans]),
                "mean_content": (span_sums[1][spans], content_counts[spans]),
            }
        batch = FullTransformerBatch(
            spans=[[doc[s:e] for s, e in r.tolist()] for doc, r in zip(docs, ranges)],
            wordpieces=WordpieceBatch.empty(),
            model_output=ModelOutput(),
            align=Ragged(np.zeros(0, np.int32), np.zeros(0, np.int32)),
            cached_doc_data=self._doc_data(pieces, layout, hidden, align_rows, per_token, [len(idx) for idx, _ in offsets], list(mixes)),
        )
        return batch, _no_backprop

    def _encode(self, doc_texts: list[str], offsets: list[tuple[np.ndarray, np.ndarray]], ranges: list[np.ndarray]) -> _Pieces:
        """Every span's wordpieces, from one call of the Rust tokenizer."""
        texts, span_char = [], []
        for text, r, (idx, length) in zip(doc_texts, ranges, offsets):
            if len(r):
                first, last = idx[r[:, 0]], idx[r[:, 1] - 1] + length[r[:, 1] - 1]
                texts.extend(text[i:j] for i, j in zip(first.tolist(), last.tolist()))
                span_char.append(first)
        encodings = self.backend.encode_batch(texts, add_special_tokens=True) if texts else []
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        if len(lengths) and lengths.max() > self.max_length:
            raise errors.ModelError(
                f"a span of {int(lengths.max())} wordpieces exceeds the transformer's {self.max_length}: "
                "lower --max-wordpieces (this should not happen; please report it)"
            )
        total = int(lengths.sum())
        return _Pieces(
            lengths=lengths,
            ids=np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total),
            offsets=np.fromiter(chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)),
                                dtype=np.int64, count=2 * total).reshape(-1, 2),
            type_ids=(np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64, count=total)
                      if self.type_ids else None),
            span_char=np.concatenate(span_char or [np.zeros(0, np.int64)]),
        )

    def _align(self, doc_texts: list[str], offsets: list[tuple[np.ndarray, np.ndarray]], pieces: _Pieces,
               layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
        """spacy-transformers' alignment for the whole batch at once (characters and tokens numbered
        across docs): each token's wordpiece rows in the batch's output, in token order, and the
        number of rows per token."""
        token_counts = np.array([len(idx) for idx, _ in offsets], dtype=np.int64)
        char_counts = np.array([len(text) + 1 for text in doc_texts], dtype=np.int64)
        char_base = np.cumsum(char_counts) - char_counts
        all_idx = np.concatenate([idx for idx, _ in offsets] or [np.zeros(0, np.int64)])
        all_len = np.concatenate([length for _, length in offsets] or [np.zeros(0, np.int64)])
        token_doc = np.repeat(np.arange(len(doc_texts)), token_counts)
        owner = char_token_map(all_idx + char_base[token_doc], all_len, int(char_counts.sum()))
        wp_doc = layout.span_doc[layout.wp_span]
        wp_char = pieces.span_char[layout.wp_span] + char_base[wp_doc]
        token, wordpiece = align_wordpieces(owner, pieces.offsets[:, 0] + wp_char, pieces.offsets[:, 1] + wp_char)
        order = np.lexsort((layout.dst[wordpiece], token))  # a token's wordpieces all lie in its doc's block
        return layout.dst[wordpiece[order]], np.bincount(token, minlength=len(all_idx))

    def _doc_data(self, pieces: _Pieces, layout: _Layout, hidden: Any, align_rows: np.ndarray, per_token: np.ndarray,
                  token_counts: list[int], mixes: list[int]) -> list[Any]:
        """One TransformerData per doc, as FullTransformerBatch.split_by_doc gives it (rows padded
        to the doc's own longest span). `hidden` as `_run` gives it: with `mixes`, their mixed states
        first, in order."""
        from spacy_transformers.data_classes import TransformerData, WordpieceBatch
        from thinc.api import get_array_module, torch2xp
        from thinc.types import Ragged
        from transformers.file_utils import ModelOutput

        layers_xp = torch2xp(hidden) if hidden.numel() else None
        if layers_xp is not None and self._spare is not None:
            # every view a doc keeps of this batch's hidden states has `layers_xp` as its base
            self._spare_users = weakref.ref(layers_xp)
        hidden_xp = layers_xp[-1] if layers_xp is not None else None
        rows = int(layout.doc_rows.sum())
        padded_ids = np.full(rows, self.pad_id, dtype=np.int64)
        padded_ids[layout.dst] = pieces.ids
        padded_mask = np.zeros(rows, dtype=np.float32)
        padded_mask[layout.dst] = 1.0
        padded_types = None
        if pieces.type_ids is not None:
            padded_types = np.full(rows, self.pad_type_id, dtype=np.int64)
            padded_types[layout.dst] = pieces.type_ids
        align_end = np.cumsum(per_token)
        token_doc = np.repeat(np.arange(len(token_counts)), token_counts)
        local_rows = (align_rows - np.repeat(layout.block_start[token_doc], per_token)).astype(np.int32)
        per_token32 = per_token.astype(np.int32)
        batch = None
        if hidden_xp is not None:  # the listeners' alignment of the whole batch, in one copy to its device
            xp = get_array_module(hidden_xp)
            both = xp.asarray(np.concatenate([align_rows.astype(np.int32), per_token32]))
            batch = BatchAlignment(hidden_xp, both[: len(align_rows)], both[len(align_rows):], dict(zip(mixes, layers_xp)))
        doc_data, token_start = [], 0
        for d, n_tokens in enumerate(token_counts):
            first, last = (int(align_end[t - 1]) if t else 0 for t in (token_start, token_start + n_tokens))
            tokens = slice(token_start, token_start + n_tokens)
            token_start += n_tokens
            if layout.n_spans[d] == 0:
                doc_data.append(TransformerData.empty())
                continue
            block = slice(int(layout.block_start[d]), int(layout.block_start[d] + layout.doc_rows[d]))
            shape = (int(layout.n_spans[d]), int(layout.doc_width[d]))
            doc_ids = padded_ids[block].reshape(shape)
            output = ModelOutput()
            output["last_hidden_state"] = hidden_xp[block].reshape(*shape, -1)
            if self.all_layers and not mixes:
                output["hidden_states"] = [layer[block].reshape(*shape, -1) for layer in layers_xp]
            data = TransformerData(
                wordpieces=WordpieceBatch(
                    strings=self.id_strings[doc_ids].tolist(),
                    input_ids=doc_ids,
                    attention_mask=padded_mask[block].reshape(shape),
                    lengths=pieces.lengths[layout.spans_of(d)].tolist(),
                    token_type_ids=padded_types[block].reshape(shape) if padded_types is not None else None,
                ),
                model_output=output,
                align=Ragged(local_rows[first:last], per_token32[tokens]),
            )
            setattr(data, BATCH_ALIGNMENT_ATTR, DocAlignment(batch, slice(first, last), tokens))
            doc_data.append(data)
        return doc_data

    def _run(self, pieces: _Pieces, layout: _Layout, content: np.ndarray,
             mixes: dict[int, list[float]]) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
        """The transformer over every span, by length-sorted buckets: the last hidden states at rows
        `layout.dst` of one float32 (1, rows, width) tensor, the last one last; when the model
        outputs every layer, each of `mixes` before it ((len(mixes) + 1, rows, width)), or with no
        mix every layer's ((n_layers + 1, rows, width)); and each span's sum of the last (every
        wordpiece, and its content wordpieces only), brought to the host in one copy for pooling."""
        import torch

        ids, type_ids, lengths, dst, wp_span = pieces.ids, pieces.type_ids, pieces.lengths, layout.dst, layout.wp_span
        rows = int(layout.doc_rows.sum())
        device = torch.device(self.device)
        width = int(self.hf_model.config.hidden_size)
        n_out = len(mixes) + 1 if mixes else int(self.hf_model.config.num_hidden_layers) + 1 if self.all_layers else 1
        out = self._output_buffer((n_out, rows, width), device, dst)
        if not len(lengths):
            empty = np.zeros((0, width), dtype=np.float32)
            return out, (empty, empty)
        if self.hf_model.training:
            self.hf_model.eval()
        starts = np.cumsum(lengths) - lengths
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            for bucket in length_buckets(lengths, self.token_budget):
                b_len = lengths[bucket]
                w = int(b_len.max())
                row, col = _ragged_positions(b_len)
                src = starts[bucket][row] + col
                # one host-to-device copy per call: ids, mask, [type ids,] source and destination rows
                grid = np.full((len(bucket), w), self.pad_id, dtype=np.int64)
                grid[row, col] = ids[src]
                mask = np.zeros((len(bucket), w), dtype=np.int64)
                mask[row, col] = 1
                parts = [grid.ravel(), mask.ravel(), row * w + col, dst[src]]
                if type_ids is not None:
                    types = np.full((len(bucket), w), self.pad_type_id, dtype=np.int64)
                    types[row, col] = type_ids[src]
                    parts.append(types.ravel())
                packed = torch.from_numpy(np.concatenate(parts)).to(device, non_blocking=True)
                cells, n = len(bucket) * w, len(src)
                inputs = {"input_ids": packed[:cells].view(len(bucket), w), "attention_mask": packed[cells: 2 * cells].view(len(bucket), w)}
                if type_ids is not None:
                    inputs["token_type_ids"] = packed[2 * cells + 2 * n:].view(len(bucket), w)
                result = self.hf_model(**inputs)
                states = result.hidden_states if self.all_layers else (result.last_hidden_state,)
                positions, rows_to = packed[2 * cells: 2 * cells + n], packed[2 * cells + n: 2 * cells + 2 * n]
                if mixes:
                    taken = [state.reshape(cells, -1)[positions].float() for state in states]
                    for layer, coefficients in zip(out, mixes.values()):
                        layer.index_copy_(0, rows_to, mix_layers(coefficients, taken))
                    out[-1].index_copy_(0, rows_to, taken[-1])
                else:
                    for layer, state in zip(out, states):
                        layer.index_copy_(0, rows_to, state.reshape(cells, -1)[positions].float())
            # span sums for pooling, on the device; one copy to the host for the whole batch
            index = torch.from_numpy(np.concatenate([dst, wp_span, np.flatnonzero(content)])).to(device)
            real_rows, owners, keep = index[: len(dst)], index[len(dst): 2 * len(dst)], index[2 * len(dst):]
            real = out[-1][real_rows]
            sums = torch.zeros((2, len(lengths), width), dtype=torch.float32, device=device)
            sums[0].index_add_(0, owners, real)
            sums[1].index_add_(0, owners[keep], real[keep])
            span_sums = sums.cpu().numpy()
        return out, (span_sums[0], span_sums[1])

    def _output_buffer(self, shape: tuple[int, int, int], device: Any, written: np.ndarray) -> Any:
        """A float32 tensor of `shape` that is zero at every row but `written` (which `_run` fills).

        On the CPU it reuses the previous batch's buffer once no doc holds a view of it: a fresh
        allocation of this size is mapped anew by the C library and faulted in page by page, each
        batch. The buffer stays between batches at the largest batch's size (which --batch-chars
        bounds). On a GPU torch's caching allocator already reuses device memory.
        """
        import torch

        if device.type != "cpu":
            return torch.zeros(shape, dtype=torch.float32, device=device)
        size = shape[0] * shape[1] * shape[2]
        spare = self._spare
        in_use = self._spare_users is not None and self._spare_users() is not None
        if spare is None or in_use or spare.numel() < size:
            self._spare, self._spare_users = torch.zeros(size, dtype=torch.float32), None
            return self._spare.view(shape)
        out = spare[:size].view(shape)
        unwritten = np.ones(shape[1], dtype=bool)
        unwritten[written] = False
        out.index_fill_(1, torch.from_numpy(np.flatnonzero(unwritten)), 0.0)
        return out


def mix_layers(coefficients: list[float], layers: Any) -> Any:
    """Σ c_l · layers[l] (numpy, cupy or torch arrays), elementwise in a fixed order: the same rows
    give the same floats wherever it runs and whatever else is in the batch (a BLAS reduction's
    blocking could differ)."""
    mixed = layers[0] * coefficients[0]
    for c, layer in zip(coefficients[1:], layers[1:]):
        mixed += layer * c
    return mixed


def _no_backprop(d_output: Any) -> Any:
    raise RuntimeError("corpus-nlp's bulk transformer forward is for prediction only")

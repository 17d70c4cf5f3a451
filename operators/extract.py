"""Doc -> arrays -> Arrow, in bulk.

Token attributes come out of `Doc.to_array` as one uint64 matrix per Doc; strings are looked up
once per unique hash for the whole batch; offsets and indices are numpy arithmetic. The only
Python loops are over sentences and entities, never over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from spacy.attrs import DEP, ENT_IOB, ENT_TYPE, HEAD, IDX, IS_SPACE, LEMMA, LENGTH, ORTH, POS, TAG
from spacy.strings import StringStore
from spacy.tokens import Doc

from . import schema
from .config import Pooling
from .pipeline import Pipeline
from .doc_arrays import sentence_token_starts
from .pooling import release_embedding

TOKEN_ATTRS = [IDX, LENGTH, ORTH, TAG, POS, LEMMA, DEP, HEAD, ENT_IOB, ENT_TYPE, IS_SPACE]
C_IDX, C_LEN, C_ORTH, C_TAG, C_POS, C_LEMMA, C_DEP, C_HEAD, C_IOB, C_ENT, C_SPACE = range(len(TOKEN_ATTRS))
IOB_STRINGS = pa.array(["", "I", "O", "B"], pa.string())  # Token.ent_iob codes 0..3


@dataclass
class SegmentAnnotations:
    """One annotated Doc (a whole text, or one segment of a long one), offsets local to it."""

    char_offset: int  # where the segment starts in the original text
    tokens: np.ndarray  # (n_tokens, len(TOKEN_ATTRS)) uint64, as Doc.to_array gives
    sent_starts: np.ndarray  # (n_sents + 1,) token index of each sentence start, then n_tokens
    ents: np.ndarray  # (n_ents, 3) int64: start token, end token (exclusive), label hash
    ent_texts: list[str]
    vectors: np.ndarray  # (n_sents, width) float32
    vector_valid: np.ndarray  # (n_sents,) bool

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_sents(self) -> int:
        return len(self.sent_starts) - 1


def annotate_segment(pipeline: Pipeline, doc: Doc, char_offset: int, pooling: Pooling) -> SegmentAnnotations:
    """Read everything corpus-nlp writes out of `doc`, then release its embedding."""
    starts = sentence_token_starts(doc)
    n_sents = len(starts) - 1
    if n_sents:
        vectors, valid = pipeline.pool_sentences(doc, pooling)
    else:
        vectors = np.zeros((0, pipeline.vector_width), dtype=np.float32)
        valid = np.zeros(0, dtype=bool)
    release_embedding(doc)
    tokens = doc.to_array(TOKEN_ATTRS) if len(doc) else np.zeros((0, len(TOKEN_ATTRS)), dtype=np.uint64)
    ents = np.array([(e.start, e.end, e.label) for e in doc.ents], dtype=np.uint64).reshape(-1, 3)
    return SegmentAnnotations(
        char_offset=char_offset,
        tokens=tokens.reshape(-1, len(TOKEN_ATTRS)).astype(np.uint64, copy=False),
        sent_starts=starts,
        ents=ents.astype(np.int64),
        ent_texts=[e.text for e in doc.ents],
        vectors=vectors,
        vector_valid=valid,
    )


@dataclass
class DocumentResult:
    """A document's segments in text order, or the error that stopped it."""

    n_chars: int
    segments: list[SegmentAnnotations]
    error: str | None = None


class _Strings:
    """Batch-wide hash -> string lookup: every unique hash is looked up in the StringStore once."""

    def __init__(self, strings: StringStore, hash_columns: list[np.ndarray]):
        self.sizes = [len(c) for c in hash_columns]
        allh = np.concatenate(hash_columns) if hash_columns else np.zeros(0, np.uint64)
        uniq, self.inverse = np.unique(allh, return_inverse=True)
        self.dictionary = pa.array([strings[int(h)] for h in uniq], pa.string())
        # the same with "" as null (the empty string's hash is 0: first if present)
        self.dictionary_nulls = self.dictionary
        if len(uniq) and uniq[0] == 0:
            self.dictionary_nulls = pa.concat_arrays([pa.nulls(1, pa.string()), self.dictionary[1:]])
        self.bounds = np.concatenate([[0], np.cumsum(self.sizes)])

    def column(self, i: int, *, empty_as_null: bool = False) -> pa.Array:
        idx = self.inverse[self.bounds[i] : self.bounds[i + 1]]
        return (self.dictionary_nulls if empty_as_null else self.dictionary).take(pa.array(idx, pa.int64()))


def build_annotated_table(
    doc_ids: pa.Array,
    sources: pa.Array,
    results: list[DocumentResult],
    pipeline: Pipeline,
) -> pa.Table:
    """One row per document: the documents columns, with tokens/entities/sentences nested."""
    n_docs = len(results)
    segs = [s for r in results for s in r.segments]
    seg_doc = np.repeat(np.arange(n_docs), [len(r.segments) for r in results])

    # per segment: its first token / sentence / entity index within its document
    seg_tok = np.array([s.n_tokens for s in segs], dtype=np.int64)
    seg_sent = np.array([s.n_sents for s in segs], dtype=np.int64)
    seg_ent = np.array([len(s.ents) for s in segs], dtype=np.int64)
    tok_base, sent_base, ent_base = (_within_doc_offsets(c, seg_doc, n_docs) for c in (seg_tok, seg_sent, seg_ent))
    seg_char = np.array([s.char_offset for s in segs], dtype=np.int64)

    # ---- tokens
    tokens = np.concatenate([s.tokens for s in segs]) if segs else np.zeros((0, len(TOKEN_ATTRS)), np.uint64)
    n_tok = len(tokens)
    tok_seg = np.repeat(np.arange(len(segs)), seg_tok)
    local_tok = np.arange(n_tok) - np.repeat(np.cumsum(seg_tok) - seg_tok, seg_tok)
    tok_idx = local_tok + np.repeat(tok_base, seg_tok)
    local_sent = np.concatenate(
        [np.repeat(np.arange(s.n_sents), np.diff(s.sent_starts)) for s in segs] or [np.zeros(0, np.int64)]
    )
    sent_idx = local_sent + np.repeat(sent_base, seg_tok)
    start_char = tokens[:, C_IDX].astype(np.int64) + np.repeat(seg_char, seg_tok)
    end_char = start_char + tokens[:, C_LEN].astype(np.int64)
    head = tok_idx + tokens[:, C_HEAD].view(np.int64)  # HEAD is relative, stored as two's complement

    # ---- entities
    ents = np.concatenate([s.ents for s in segs]) if segs else np.zeros((0, 3), np.int64)
    ent_seg = np.repeat(np.arange(len(segs)), seg_ent)
    ent_first_tok = ents[:, 0] + np.cumsum(seg_tok)[ent_seg] - seg_tok[ent_seg]  # row in `tokens`
    ent_last_tok = ents[:, 1] - 1 + np.cumsum(seg_tok)[ent_seg] - seg_tok[ent_seg]
    ent_idx = np.arange(len(ents)) - np.repeat(np.cumsum(seg_ent) - seg_ent, seg_ent) + np.repeat(ent_base, seg_ent)

    # ---- sentences
    sent_first = np.concatenate([s.sent_starts[:-1] for s in segs] or [np.zeros(0, np.int64)])
    sent_last = np.concatenate([s.sent_starts[1:] - 1 for s in segs] or [np.zeros(0, np.int64)])
    sent_seg = np.repeat(np.arange(len(segs)), seg_sent)
    seg_row0 = (np.cumsum(seg_tok) - seg_tok)[sent_seg]
    n_sent_rows = len(sent_first)
    sent_local = np.arange(n_sent_rows) - np.repeat(np.cumsum(seg_sent) - seg_sent, seg_sent)
    sent_ids = sent_local + np.repeat(sent_base, seg_sent)
    width = pipeline.vector_width
    vectors = np.concatenate([s.vectors for s in segs]) if segs else np.zeros((0, width), np.float32)
    valid = np.concatenate([s.vector_valid for s in segs]) if segs else np.zeros(0, bool)

    strings = _Strings(
        pipeline.nlp.vocab.strings,
        [tokens[:, c] for c in (C_ORTH, C_TAG, C_POS, C_LEMMA, C_DEP, C_ENT)] + [ents[:, 2].astype(np.uint64)],
    )
    has = pipeline.annotates

    def maybe(attr: str, values: pa.Array) -> pa.Array:
        return values if has.get(attr, False) else pa.nulls(len(values), values.type)

    def label(attr: str, column: int) -> pa.Array:
        """A string attribute, null where nothing set it for the token (spaCy's "")."""
        return strings.column(column, empty_as_null=True) if has.get(attr, False) else pa.nulls(n_tok, pa.string())

    token_struct = pa.StructArray.from_arrays(
        [
            pa.array(sent_idx, pa.int32()),
            pa.array(tok_idx, pa.int32()),
            pa.array(start_char, pa.int64()),
            pa.array(end_char, pa.int64()),
            strings.column(0),
            label("TAG", 1),
            label("POS", 2),
            label("LEMMA", 3),
            label("DEP", 4),
            maybe("DEP", pa.array(head, pa.int32())),
            maybe("ENT_IOB", IOB_STRINGS.take(pa.array(tokens[:, C_IOB].astype(np.int64)))),
            strings.column(5, empty_as_null=True),
        ],
        fields=schema.TOKEN_FIELDS,
    )
    ent_texts = [t for s in segs for t in s.ent_texts]
    entity_struct = pa.StructArray.from_arrays(
        [
            pa.array(ent_idx, pa.int32()),
            pa.array(sent_idx[ent_first_tok] if len(ents) else np.zeros(0), pa.int32()),
            pa.array(start_char[ent_first_tok] if len(ents) else np.zeros(0), pa.int64()),
            pa.array(end_char[ent_last_tok] if len(ents) else np.zeros(0), pa.int64()),
            strings.column(6),
            pa.array(ent_texts, pa.string()),
        ],
        fields=schema.ENTITY_FIELDS,
    )
    rows_first, rows_last = seg_row0 + sent_first, seg_row0 + sent_last
    vector_array = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1), pa.float32()), width, mask=pa.array(~valid)
    )
    sentence_struct = pa.StructArray.from_arrays(
        [
            pa.array(sent_ids, pa.int32()),
            pa.array(start_char[rows_first] if n_sent_rows else np.zeros(0), pa.int64()),
            pa.array(end_char[rows_last] if n_sent_rows else np.zeros(0), pa.int64()),
            pa.array(sent_last - sent_first + 1, pa.int32()),
            vector_array,
        ],
        fields=schema.sentence_fields(width),
    )

    doc_tok = np.bincount(seg_doc, weights=seg_tok, minlength=n_docs).astype(np.int64)
    doc_sent = np.bincount(seg_doc, weights=seg_sent, minlength=n_docs).astype(np.int64)
    doc_ent = np.bincount(seg_doc, weights=seg_ent, minlength=n_docs).astype(np.int64)
    is_space = tokens[:, C_SPACE].astype(bool)
    doc_words = np.bincount(seg_doc[tok_seg], weights=~is_space, minlength=n_docs).astype(np.int64) if n_tok else np.zeros(n_docs, np.int64)
    errors = [r.error for r in results]

    columns = {
        "doc_id": doc_ids,
        "source": sources,
        "n_chars": pa.array([r.n_chars for r in results], pa.int64()),
        "n_tokens": pa.array(doc_tok, pa.int64()),
        "n_words": pa.array(doc_words, pa.int64()),
        "n_sents": pa.array(doc_sent, pa.int64()),
        "status": pa.array([schema.STATUS_OK if e is None else schema.STATUS_ERROR for e in errors], pa.string()),
        "error": pa.array(errors, pa.string()),
        "model": pa.array([pipeline.model_id] * n_docs, pa.string()),
        "tokens": _lists(doc_tok, token_struct),
        "entities": _lists(doc_ent, entity_struct),
        "sentences": _lists(doc_sent, sentence_struct),
    }
    out_schema = schema.annotated_schema(doc_ids.type, width)
    return pa.Table.from_arrays([columns[f.name] for f in out_schema], schema=out_schema)


def _within_doc_offsets(counts: np.ndarray, seg_doc: np.ndarray, n_docs: int) -> np.ndarray:
    """For each segment, how many items its document's earlier segments hold."""
    total = np.cumsum(counts) - counts
    doc_first = np.searchsorted(seg_doc, np.arange(n_docs))
    return total - (total[doc_first[seg_doc]] if len(seg_doc) else 0)


def _lists(counts: np.ndarray, values: pa.Array) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)

"""Array views of a spaCy Doc, read with `Doc.to_array` instead of a Python loop over tokens."""

from __future__ import annotations

import numpy as np
from spacy.attrs import IDX, LENGTH, SENT_START
from spacy.tokens import Doc

TEXT_KEY = "corpus_nlp.text"  # doc.user_data: the text the Doc was made from (see make_docs)
SPANS_KEY = "corpus_nlp.spans"  # doc.user_data: (n_spans, 2) token ranges the transformer ran on


def make_docs(nlp, texts: list[str]) -> list[Doc]:
    """nlp.make_doc of each text, remembering the text: Doc.text rebuilds it token by token."""
    docs = []
    for text in texts:
        doc = nlp.make_doc(text)
        doc.user_data[TEXT_KEY] = text
        docs.append(doc)
    return docs


def doc_text(doc: Doc) -> str:
    """The text of a Doc made by make_docs without rebuilding it, else Doc.text."""
    text = doc.user_data.get(TEXT_KEY)
    return doc.text if text is None else text


def sentence_token_starts(doc: Doc) -> np.ndarray:
    """Token index where each sentence of `doc.sents` starts, then len(doc) (int64)."""
    n = len(doc)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    if "sents" in doc.user_hooks or not doc.has_annotation("SENT_START"):
        # a custom hook, or no boundaries at all (doc.sents then raises spaCy's own error)
        return np.array([s.start for s in doc.sents] + [n], dtype=np.int64)
    flags = doc.to_array(SENT_START).astype(np.int64)  # 1 starts a sentence; -1 and 0 do not
    return np.concatenate([[0], np.flatnonzero(flags[1:] == 1) + 1, [n]]).astype(np.int64)


def token_offsets(doc: Doc) -> tuple[np.ndarray, np.ndarray]:
    """(character offset, length in characters) of every token (int64)."""
    if len(doc) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    columns = doc.to_array([IDX, LENGTH]).astype(np.int64)
    return columns[:, 0], columns[:, 1]

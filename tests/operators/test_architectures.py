"""The default pipeline's layer mix (operators/architectures.py), and the bulk forward that computes
it from every layer's hidden states (operators/transformer.py)."""

from types import SimpleNamespace

import numpy as np
import pytest
import spacy
from thinc.types import Ragged

from operators.architectures import layer_mix
from operators.pipeline import load_pipeline
from tests.conftest import SAMPLE_TEXTS
from tests.pipelines import _config, _examples, _train

EDGE_TEXTS = ["", "   ", "Hello", "Mr. Smith went to Washington.  He  saw\n\n\nthings!",
              " ".join(f"word{i} and antidisestablishmentarianism" for i in range(40)) + "."]
TINY_LAYERS = 3  # the tiny BERT's embeddings and its 2 layers


@pytest.fixture(scope="module")
def mix_pipeline_dir(tmp_path_factory, tiny_bert_dir):
    """The tiny BERT asked for all hidden states; a tagger and ner listening through layer mixes."""
    from spacy_transformers.span_getters import get_doc_spans

    config = _config(str(tiny_bert_dir), ["transformer", "tagger", "ner"])
    config["components"]["transformer"]["model"]["transformer_config"] = {"output_hidden_states": True}
    mix = {"@architectures": "corpus_nlp.TransformerLayerMixListener.v1", "layers": TINY_LAYERS,
           "upstream": "transformer", "pooling": {"@layers": "reduce_mean.v1"}}
    config["components"]["tagger"]["model"]["tok2vec"] = mix
    config["components"]["ner"]["model"]["tok2vec"] = mix
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    trf_model = nlp.get_pipe("transformer").model
    sent_spans = trf_model.attrs["get_spans"]
    trf_model.attrs["get_spans"] = get_doc_spans  # nlp.update runs no sentencizer
    _train(nlp, _examples(nlp, with_deps=False), 30)
    trf_model.attrs["get_spans"] = sent_spans
    path = tmp_path_factory.mktemp("mix") / "pipeline"
    nlp.to_disk(path)
    return str(path)


def _mixes(nlp):
    return [node for _, proc in nlp.pipeline if hasattr(proc, "model")
            for node in proc.model.walk() if node.name == "trfs2arrays_layer_mix"]


def test_training_moved_the_mix_off_an_even_one(mix_pipeline_dir):
    nlp = spacy.load(mix_pipeline_dir)
    mixes = _mixes(nlp)
    assert len(mixes) == 2
    for mix in mixes:
        weights = mix.get_param("weights")
        assert weights.shape == (TINY_LAYERS,) and np.ptp(weights) > 1e-4  # gradients reached it


def test_bulk_forward_mixes_the_layers_and_keeps_the_last_as_spacy_transformers_does(mix_pipeline_dir):
    """The listeners' mixes are computed in the forward pass: the batch keeps each mix and the last
    layer; with no mix registered it keeps every layer, as spacy-transformers does."""
    from operators.architectures import mix_coefficients
    from operators.transformer import BATCH_ALIGNMENT_ATTR, mix_layers

    texts = SAMPLE_TEXTS * 2 + EDGE_TEXTS
    bulk = load_pipeline(mix_pipeline_dir, use_gpu=False, max_wordpieces=24, token_budget=64)
    every = load_pipeline(mix_pipeline_dir, use_gpu=False, max_wordpieces=24, token_budget=64)
    every.forward.mixes.clear()
    plain = load_pipeline(mix_pipeline_dir, use_gpu=False, max_wordpieces=24, bulk=False)
    mixes = _mixes(bulk.nlp)
    assert sorted(bulk.forward.mixes) == sorted(m.id for m in mixes) and len(mixes) == 2
    checked = 0
    for a, e, b in zip(bulk.nlp.pipe(texts, batch_size=8), every.nlp.pipe(texts, batch_size=8), plain.nlp.pipe(texts, batch_size=8)):
        assert [t.tag_ for t in a] == [t.tag_ for t in e] == [t.tag_ for t in b]
        assert [(x.start, x.end, x.label_) for x in a.ents] == [(x.start, x.end, x.label_) for x in b.ents]
        x, y, z = a._.trf_data, e._.trf_data, b._.trf_data
        if "last_hidden_state" not in z.model_output:  # no spans (empty text): nothing from any
            assert "hidden_states" not in x.model_output and "hidden_states" not in y.model_output
            continue
        assert "hidden_states" not in x.model_output
        assert len(y.model_output.hidden_states) == len(z.model_output.hidden_states) == TINY_LAYERS
        # the last layer is what pooling and every last-layer listener read, unchanged
        np.testing.assert_array_equal(y.model_output.hidden_states[-1], y.model_output.last_hidden_state)
        np.testing.assert_array_equal(x.model_output.last_hidden_state, y.model_output.last_hidden_state)
        for i, n in enumerate(x.wordpieces.lengths):
            for layer_y, layer_z in zip(y.model_output.hidden_states, z.model_output.hidden_states):
                np.testing.assert_allclose(layer_y[i, :n], layer_z[i, :n], atol=1e-5)
        # each mix, at the rows the doc's tokens align to: the mix of every layer's rows
        ref = getattr(x, BATCH_ALIGNMENT_ATTR)
        rows = ref.batch.rows[ref.rows]
        width = y.model_output.last_hidden_state.shape[-1]
        local = np.asarray(y.align.dataXd).ravel()  # the same rows, numbered within the doc's block
        layers = [h.reshape(-1, width)[local] for h in y.model_output.hidden_states]
        for mix in mixes:
            np.testing.assert_array_equal(ref.batch.mixed[mix.id][rows], mix_layers(mix_coefficients(mix), layers))
        checked += 1
    assert checked >= len(SAMPLE_TEXTS)


def test_the_mix_pools_a_bulk_batch_at_once_to_the_same_token_vectors(mix_pipeline_dir):
    p = load_pipeline(mix_pipeline_dir, use_gpu=False, max_wordpieces=24, token_budget=64)
    texts = SAMPLE_TEXTS * 2 + EDGE_TEXTS
    mix = _mixes(p.nlp)[0]
    bulk = mix.predict([doc._.trf_data for doc in p.nlp.pipe(texts, batch_size=len(texts))])
    # docs of two bulk passes at once: each pooled from its own pass's mix
    halves = [[doc._.trf_data for doc in p.nlp.pipe(part, batch_size=len(part))] for part in (texts[:5], texts[5:])]
    for a, b in zip(mix.predict(halves[0] + halves[1]), mix.predict(halves[0]) + mix.predict(halves[1])):
        np.testing.assert_array_equal(a, b)
    p.forward.mixes.clear()  # every layer kept, the mix computed from them doc by doc: the same vectors
    trf_datas = [doc._.trf_data for doc in p.nlp.pipe(texts, batch_size=len(texts))]
    assert all(len(t.model_output.hidden_states) == TINY_LAYERS for t in trf_datas if "last_hidden_state" in t.model_output)
    by_doc = mix.predict(trf_datas)
    assert [a.shape for a in bulk] == [b.shape for b in by_doc]
    assert sum(a.shape[0] for a in bulk) > 100
    for a, b in zip(bulk, by_doc):
        np.testing.assert_array_equal(a, b)


def test_the_mix_is_scale_times_softmax_weights_and_its_gradient_is_right():
    """Against a hand computation, and the gradient against finite differences."""
    from spacy_transformers.data_classes import TransformerData, WordpieceBatch
    from thinc.api import reduce_mean
    from transformers.file_utils import ModelOutput

    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(1, 5, 4)).astype("f") for _ in range(3)]
    data = TransformerData(
        wordpieces=WordpieceBatch.zeros([5]),
        model_output=ModelOutput(last_hidden_state=layers[-1], hidden_states=layers),
        align=Ragged(np.array([1, 2, 2, 3, 4], dtype="i"), np.array([2, 1, 2], dtype="i")),  # 3 tokens
    )
    model = layer_mix(reduce_mean(), 3)
    model.initialize()
    model.set_param("weights", np.array([0.5, -1.0, 0.2], dtype="f"))
    model.set_param("scale", np.array([1.5], dtype="f"))
    share = np.exp([0.5, -1.0, 0.2]) / np.exp([0.5, -1.0, 0.2]).sum()
    mixed = 1.5 * sum(s * layer[0] for s, layer in zip(share, layers))
    expected = np.stack([mixed[[1, 2]].mean(0), mixed[2], mixed[[3, 4]].mean(0)])
    (out,), backprop = model([data], is_train=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5)

    d_out = rng.normal(size=out.shape).astype("f")
    (d_data,) = backprop([d_out])  # nothing for the frozen transformer
    assert not d_data.model_output.last_hidden_state.any() and d_data.model_output.last_hidden_state.shape == (1, 5, 4)
    analytic = {name: model.get_grad(name).copy() for name in ("weights", "scale")}

    def loss() -> float:
        (y,), _ = model([data], is_train=False)
        return float((y.astype(np.float64) * d_out).sum())

    for name in ("weights", "scale"):
        value = model.get_param(name).copy()
        for k in range(len(value)):
            step = np.zeros_like(value)
            step[k] = 1e-2
            model.set_param(name, value + step)
            up = loss()
            model.set_param(name, value - step)
            down = loss()
            model.set_param(name, value)
            assert analytic[name][k] == pytest.approx((up - down) / 2e-2, rel=1e-2, abs=1e-4), (name, k)


def test_a_transformer_without_every_layer_is_refused_with_what_to_set():
    from spacy_transformers.data_classes import TransformerData, WordpieceBatch
    from thinc.api import reduce_mean
    from transformers.file_utils import ModelOutput

    layers = [np.ones((1, 2, 4), dtype="f")] * 2
    data = TransformerData(wordpieces=WordpieceBatch.zeros([2]),
                           model_output=ModelOutput(last_hidden_state=layers[-1], hidden_states=layers),
                           align=Ragged(np.array([0, 1], dtype="i"), np.array([1, 1], dtype="i")))
    model = layer_mix(reduce_mean(), 7)
    model.initialize()
    with pytest.raises(ValueError, match="output_hidden_states"):
        model.predict([data])
    data.model_output = ModelOutput(last_hidden_state=layers[-1])  # only the last layer: not mixed 7 times
    with pytest.raises(ValueError, match="output_hidden_states"):
        model.predict([data])
    # the bulk forward refuses such a mix when the pipeline loads, before any batch
    from operators.errors import ModelError
    from operators.transformer import BulkTransformerForward

    forward = BulkTransformerForward.__new__(BulkTransformerForward)
    forward.hf_model, forward.all_layers, forward.mixes = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=6)), False, {}
    with pytest.raises(ModelError, match="output_hidden_states"):
        forward.add_mix(model.id, 7, lambda: [1.0] * 7)
    forward.all_layers = True
    with pytest.raises(ModelError, match="expects 8"):
        forward.add_mix(model.id, 8, lambda: [1.0] * 8)
    forward.add_mix(model.id, 7, lambda: [1.0] * 7)
    assert list(forward.mixes) == [model.id]
    # the listener's zeros for a doc the (disabled) transformer did not run on: zero vectors
    (out,) = model.predict([TransformerData.zeros(3, 4)])
    assert out.shape == (3, 4) and not out.any()


def test_training_features_compacted_give_the_mix_the_same_token_vectors(mix_pipeline_dir):
    """train-default keeps only the aligned rows of each layer, in float16 (jobs/train_default.py)."""
    from jobs.train_default import compact_features

    nlp = spacy.load(mix_pipeline_dir)
    nlp.add_pipe("sentencizer", first=True)
    docs = list(nlp.pipe(SAMPLE_TEXTS + ["Hello"]))
    full = [doc._.trf_data for doc in docs]
    compact = [compact_features(t) for t in full]
    assert all(c.model_output.hidden_states[0].dtype == np.float16 for c in compact)
    assert sum(c.model_output.last_hidden_state.size for c in compact) < sum(t.model_output.last_hidden_state.size for t in full)
    mix = _mixes(nlp)[0]
    for a, b in zip(mix.predict(full), mix.predict(compact)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)

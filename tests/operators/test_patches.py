"""One test per patch of operators/patches.py: the patched attribute is still what the library runs.

Each test patches a freshly loaded pipeline with a recorder and checks, by its effect, that the
library called it. If one fails after an upgrade of spaCy, thinc or spacy-transformers, the patch
it names no longer takes effect: see the list in operators/patches.py.
"""

import pytest
import spacy

from operators import patches
from operators.errors import ModelError

TEXTS = ["Alice Smith works for Acme Corp in Paris.", "Bob flew to London. It rained."]


def moved(number: int) -> str:
    return f"patch {number} of operators/patches.py no longer takes effect after an upgrade: see its docstring"


@pytest.fixture
def trf_nlp(trf_pipeline_dir):
    nlp = spacy.load(trf_pipeline_dir)
    nlp.add_pipe("sentencizer", first=True)
    return nlp


class Recorder:
    def __init__(self, wrapped):
        self.wrapped, self.calls = wrapped, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def test_patch_1_transformer_forward(trf_nlp):
    trf_model = trf_nlp.get_pipe("transformer").model
    from spacy_transformers.layers.transformer_model import forward  # what training keeps using

    assert trf_model._func is forward, moved(1)
    recorder = Recorder(trf_model._func)
    patches.replace_transformer_forward(trf_model, recorder)
    list(trf_nlp.pipe(TEXTS))
    assert recorder.calls > 0, moved(1)


def test_patch_2_one_predict_per_batch(trf_nlp):
    transformer = trf_nlp.get_pipe("transformer")
    transformer.cfg["max_batch_items"] = 8  # few items per predict: the batch is cut into several calls
    recorder = Recorder(transformer.predict)
    transformer.predict = recorder
    list(trf_nlp.pipe(TEXTS * 4, batch_size=8))
    assert recorder.calls > 1, moved(2)  # spacy-transformers reads the setting ...
    recorder.calls = 0
    patches.predict_whole_batches(transformer)
    list(trf_nlp.pipe(TEXTS * 4, batch_size=8))
    assert recorder.calls == 1, moved(2)  # ... and with it unbounded predicts each batch at once


def test_patch_3_listener_pooling(trf_nlp):
    from operators.pipeline import _listener_poolings

    layers = _listener_poolings(trf_nlp, "transformer")
    assert layers, moved(3)  # spacy-transformers' listeners still pool in layers named trfs2arrays
    recorders = []
    for layer in layers:
        patches.replace_listener_pooling(layer, lambda original: recorders.append(Recorder(original)) or recorders[-1])
    list(trf_nlp.pipe(TEXTS))
    assert all(r.calls > 0 for r in recorders), moved(3)


def test_patch_4_tagger_guesses(trf_nlp):
    tagger = trf_nlp.get_pipe("tagger")
    recorder = Recorder(tagger._scores2guesses)
    patches.replace_tagger_guesses(tagger, recorder)
    docs = list(trf_nlp.pipe(TEXTS))
    assert recorder.calls > 0 and docs[0][0].tag_, moved(4)


def test_patch_5_span_getter(trf_nlp):
    trf_model = trf_nlp.get_pipe("transformer").model
    recorder = Recorder(trf_model.attrs["get_spans"])
    patches.set_span_getter(trf_model, recorder)
    list(trf_nlp.pipe(TEXTS))
    assert recorder.calls > 0, moved(5)


def test_patch_6_transformer_name(tiny_bert_dir):
    from spacy_transformers.layers import TransformerModel
    from spacy.tokens import Doc

    model = TransformerModel("no-such-model-on-any-hub", get_spans=lambda docs: [[d[:]] for d in docs], tokenizer_config={})
    patches.set_transformer_name(model, str(tiny_bert_dir))
    nlp = spacy.blank("en")
    model.initialize(X=[Doc(nlp.vocab, words=["Hello", "world"])])  # loads from the patched name, offline
    assert model.get_dim("nO") > 0, moved(6)


def test_each_patch_refuses_a_target_that_is_not_there():
    class Nothing:
        name = "nothing"
        attrs: dict = {}
        cfg: dict = {}

    for patch, args in [
        (patches.replace_transformer_forward, (Nothing(), None)),
        (patches.predict_whole_batches, (Nothing(),)),
        (patches.replace_listener_pooling, (Nothing(), None)),
        (patches.replace_tagger_guesses, (Nothing(), None)),
        (patches.set_span_getter, (Nothing(), None)),
        (patches.set_transformer_name, (Nothing(), "x")),
    ]:
        with pytest.raises(ModelError, match="operators/patches.py patch [1-6]: .* pinned in pyproject.toml"):
            patch(*args)

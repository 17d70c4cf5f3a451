"""Every change corpus-nlp makes to a private attribute of spaCy, thinc or spacy-transformers.

Written for the versions pinned in pyproject.toml: spaCy 3.8.18, thinc 8.3 (8.3.4 and later
8.3 releases), spacy-transformers 1.4.0. Before patching, each function checks that the attribute
is where those versions keep it and raises `ModelError` naming the patch otherwise; and
tests/operators/test_patches.py checks each patch by its effect (the replacement is what runs), so
an upgrade that moves or stops reading one of them fails there, with the patch's name.

1. `replace_transformer_forward`: thinc `Model._func` of a spacy-transformers `TransformerModel`
   (the forward that `Model.__call__` runs) becomes operators.transformer.BulkTransformerForward
   for prediction; training keeps `spacy_transformers.layers.transformer_model.forward`.
2. `predict_whole_batches`: spacy-transformers `Transformer.cfg["max_batch_items"]` (the padded
   size its `pipe` cuts a batch into before each predict) is made unbounded: the bulk forward
   bounds its own calls, and one predict per batch lets it sort every span of the batch.
3. `replace_listener_pooling`: thinc `Model._func` of spacy-transformers' `trfs2arrays` layers (a
   listener's pooling of wordpiece rows into token vectors) becomes
   operators.transformer.BulkListenerPooling, which pools a bulk pass's docs in one call.
4. `replace_tagger_guesses`: spaCy `Tagger._scores2guesses` (taggers, senters, morphologizers:
   scores to class ids) becomes operators.pipeline.argmax_per_doc, one device copy per batch.
5. `set_span_getter`: spacy-transformers `TransformerModel.attrs["get_spans"]` (the span getter
   its forward reads) becomes operators.pipeline.CappedSentenceSpans.
6. `set_transformer_name`: spacy-transformers `TransformerModel.attrs["name"]` (what its
   initialization loads the Hugging Face model from) points at the installed MiniLM weights when
   the default pipeline is assembled (operators/default_model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors

VERSIONS = "spaCy 3.8.18, thinc 8.3 and spacy-transformers 1.4.0"


def replace_transformer_forward(trf_model: Any, forward: Callable) -> None:
    """Patch 1: `forward(model, docs, is_train)` runs in place of the TransformerModel's own."""
    _require(hasattr(trf_model, "_func") and trf_model.name.startswith("transformer"),
             1, "thinc Model._func of spacy-transformers' TransformerModel")
    trf_model._func = forward


def predict_whole_batches(transformer: Any) -> None:
    """Patch 2: the Transformer component predicts each `nlp.pipe` batch in one call."""
    cfg = getattr(transformer, "cfg", None)
    _require(isinstance(cfg, dict) and "max_batch_items" in cfg, 2, 'spacy-transformers Transformer.cfg["max_batch_items"]')
    cfg["max_batch_items"] = 2**62


def replace_listener_pooling(layer: Any, make: Callable[[Callable], Callable]) -> None:
    """Patch 3: a `trfs2arrays` layer's forward becomes `make(its forward)`."""
    _require(hasattr(layer, "_func") and layer.name == "trfs2arrays", 3, "thinc Model._func of spacy-transformers' trfs2arrays")
    layer._func = make(layer._func)


def replace_tagger_guesses(tagger: Any, guesses: Callable[[list], list]) -> None:
    """Patch 4: `guesses(scores)` turns a Tagger's (or senter's) scores into class ids per doc."""
    _require(callable(getattr(type(tagger), "_scores2guesses", None)), 4, "spaCy Tagger._scores2guesses")
    tagger._scores2guesses = guesses


def set_span_getter(trf_model: Any, get_spans: Callable) -> None:
    """Patch 5: the spans a TransformerModel runs on come from `get_spans(docs)`."""
    _require("get_spans" in getattr(trf_model, "attrs", {}), 5, 'spacy-transformers TransformerModel.attrs["get_spans"]')
    trf_model.attrs["get_spans"] = get_spans


def set_transformer_name(trf_model: Any, name: str) -> None:
    """Patch 6: a TransformerModel initializes its Hugging Face model from `name` (a path)."""
    _require("name" in getattr(trf_model, "attrs", {}), 6, 'spacy-transformers TransformerModel.attrs["name"]')
    trf_model.attrs["name"] = name


def _require(found: bool, number: int, target: str) -> None:
    if not found:
        raise errors.patch_target_moved(number, target, VERSIONS)

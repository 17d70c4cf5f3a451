"""Model architectures of the shipped default pipeline (registered with spaCy's registry).

spaCy finds them through the `spacy_architectures` entry point in pyproject.toml, so a plain
`spacy.load` of the assembled pipeline works without importing corpus-nlp first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from spacy.ml.models import MultiHashEmbed
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Maxout, Model, chain, concatenate, with_array
from thinc.types import Floats2d, Ragged

from . import span_ner  # noqa: F401  (registers the entity recognizer and its model)


@registry.architectures("corpus_nlp.TransformerHashEmbed.v1")
def transformer_hash_embed(
    transformer: Model[list[Doc], list[Floats2d]],
    width: int,
    hash_width: int,
    attrs: list[str],
    rows: list[int],
    maxout_pieces: int = 3,
) -> Model[list[Doc], list[Floats2d]]:
    """Token vectors from a (frozen) transformer listener joined with small trainable hash embeddings.

    The transformer's pooled wordpiece vectors carry context; the hash embeddings of NORM, PREFIX,
    SUFFIX and SHAPE carry spelling and casing, which a sentence-embedding model under-represents.
    A Maxout layer mixes both into `width` dimensions for an encoder (e.g. MaxoutWindowEncoder).
    """
    hashes = MultiHashEmbed(width=hash_width, attrs=attrs, rows=rows, include_static_vectors=False)
    mix = with_array(Maxout(nO=width, nP=maxout_pieces, dropout=0.0, normalize=True))
    model = chain(concatenate(transformer, hashes), mix)
    model.set_dim("nO", width)
    return model


@registry.architectures("corpus_nlp.TransformerLayerMixListener.v1")
def transformer_layer_mix_listener(
    pooling: Model[Ragged, Floats2d], layers: int, upstream: str = "transformer"
) -> Model[list[Doc], list[Floats2d]]:
    """A listener to a frozen spacy-transformers `Transformer` whose token vectors are a learned
    scalar mix of all its layers' hidden states (ELMo's: scale x softmax(weights) . layers).

    `layers`: the hidden states the transformer outputs, its embeddings included (all-MiniLM-L6-v2:
    7); its config must ask for them (`transformer_config = {"output_hidden_states": true}`). A
    token's vector is `pooling` (e.g. reduce_mean) over the mixed rows of its wordpieces. The
    layers below the last keep more of a word's form and syntax than the last, which
    all-MiniLM-L6-v2 was tuned to pool into sentence embeddings. No gradient reaches the
    transformer: it stays frozen, and its last layer (the sentence vectors') is unchanged.
    """
    from spacy_transformers.layers.listener import TransformerListener

    listener = TransformerListener(upstream_name=upstream)
    model = chain(listener, layer_mix(pooling, layers))
    model.set_ref("listener", listener)
    return model


def layer_mix(pooling: Model[Ragged, Floats2d], layers: int) -> Model[list[Any], list[Floats2d]]:
    """TransformerData → token vectors: the listener's `trfs2arrays`, with a scalar mix of layers."""
    return Model(
        "trfs2arrays_layer_mix",
        _layer_mix_forward,
        init=_layer_mix_init,
        layers=[pooling],
        dims={"nL": layers},
        params={"weights": None, "scale": None},
    )


def _layer_mix_init(model: Model, X: Any = None, Y: Any = None) -> None:
    model.set_param("weights", model.ops.alloc1f(model.get_dim("nL")))  # softmax: an even mix at first
    model.set_param("scale", model.ops.asarray1f([1.0]))


def _layer_stack(trf_data: Any, n_layers: int) -> Any:
    """(n_layers, rows, width) hidden states of one doc's output, rows flattened over its spans."""
    output = trf_data.model_output
    states = output.get("hidden_states")
    if states is None and not output.last_hidden_state.any():
        # the listener's zero output for a doc the transformer did not run on (it was disabled)
        states = [output.last_hidden_state] * n_layers
    if states is None or len(states) != n_layers:
        raise ValueError(f"the transformer gives {len(states or [1])} hidden states; this layer mix expects {n_layers} "
                         "(set output_hidden_states in the transformer's config, and `layers` to its layers + 1)")
    width = output.last_hidden_state.shape[-1]
    return [s.reshape(-1, width) for s in states]


def mix_coefficients(model: Model) -> list[float]:
    """A layer mix's coefficient per hidden state: scale · softmax(weights)."""
    return _mix_parts(model)[2]


def _mix_parts(model: Model) -> tuple[np.ndarray, float, list[float]]:
    ops = model.ops
    weights = ops.to_numpy(model.get_param("weights")).astype(np.float64)
    scale = float(ops.to_numpy(model.get_param("scale"))[0])
    share = np.exp(weights - weights.max())
    share /= share.sum()
    return share, scale, (scale * share).tolist()


def _layer_mix_forward(model: Model, trf_datas: list[Any], is_train: bool) -> tuple[list[Floats2d], Any]:
    from .transformer import BATCH_ALIGNMENT_ATTR, mix_layers

    ops, pooling, n_layers = model.ops, model.layers[0], model.get_dim("nL")
    share, scale, coefficients = _mix_parts(model)

    refs = [getattr(t, BATCH_ALIGNMENT_ATTR, None) for t in trf_datas]
    if not is_train and _mixed_by_forward(model, trf_datas, refs):  # BulkTransformerForward.add_mix
        return _pool_mixed(model, refs), _no_backprop

    # doc by doc (training, spacy-transformers' own forward): each doc's wordpiece rows that its
    # tokens align to, every layer, then mixed and pooled for the whole batch at once
    gathered, lengths, owners, outputs = [], [], [], [None] * len(trf_datas)
    for i, trf_data in enumerate(trf_datas):
        output = trf_data.model_output
        if "last_hidden_state" not in output or output.last_hidden_state.size == 0:
            continue  # as trfs2arrays: a doc without transformer output gets a (0, 0) array
        width = output.last_hidden_state.shape[-1]
        align = trf_data.align
        n_tokens = len(align.lengths)
        if not int(align.lengths.sum()):  # no token aligns to a wordpiece: one zero row per token
            gathered.append(ops.xp.zeros((n_layers, n_tokens, width), dtype="f"))
            lengths.append(ops.alloc1i(n_tokens) + 1)
        else:
            index = ops.asarray(align.dataXd).ravel()
            gathered.append(ops.xp.stack([layer[index] for layer in _layer_stack(trf_data, n_layers)]).astype("f"))
            lengths.append(ops.asarray(align.lengths).astype("i"))
        owners.append(i)
    if owners:
        stacked = ops.xp.concatenate(gathered, axis=1)
        token_lengths = ops.xp.concatenate(lengths)
        pooled, backprop_pooling = pooling(Ragged(mix_layers(coefficients, stacked), token_lengths), is_train)
        splits = np.cumsum([len(x) for x in lengths])[:-1].tolist()
        for i, vectors in zip(owners, ops.xp.split(pooled, splits)):
            outputs[i] = vectors
    for i, output in enumerate(outputs):
        if output is None:
            outputs[i] = ops.alloc2f(0, 0)

    def backprop(d_outputs: list[Floats2d]) -> list[Any]:
        if owners:
            d_rows = backprop_pooling(ops.xp.concatenate([d_outputs[i] for i in owners])).dataXd
            # mixed = scale · Σ_l share_l · layer_l
            grad = np.array([float((stacked[layer] * d_rows).sum()) for layer in range(n_layers)])
            d_scale = float(share @ grad)
            d_share = scale * grad
            model.inc_grad("weights", ops.asarray1f(share * (d_share - share @ d_share)))
            model.inc_grad("scale", ops.asarray1f([d_scale]))
        # the transformer is frozen: a zero gradient for it, in trfs2arrays' form (grad_factor 0)
        return [_zero_gradient(trf_datas[i]) for i in owners]

    return outputs, backprop


def _mixed_by_forward(model: Model, trf_datas: list[Any], refs: list[Any]) -> bool:
    """Do these docs all come from bulk passes that mixed the layers for `model` (or have no output)?"""
    return any(r is not None for r in refs) and all(
        model.id in r.batch.mixed if r is not None else "last_hidden_state" not in t.model_output
        for r, t in zip(refs, trf_datas))


def _pool_mixed(model: Model, refs: list[Any]) -> list[Floats2d]:
    """Token vectors from the mixes the bulk passes computed: one pooling call per pass (one in
    corpus-nlp's annotation, where a batch is one pass)."""
    from .transformer import pool_bulk

    outputs = [model.ops.alloc2f(0, 0) for _ in refs]  # as trfs2arrays for a doc without output
    for batch in {id(r.batch): r.batch for r in refs if r is not None}.values():
        mixed = batch.mixed[model.id]
        pooled = pool_bulk(model, [r if r is not None and r.batch is batch else None for r in refs], batch, lambda rows: mixed[rows])
        for i, r in enumerate(refs):
            if r is not None and r.batch is batch:
                outputs[i] = pooled[i]
    return outputs


def _zero_gradient(trf_data: Any) -> Any:
    from spacy_transformers.data_classes import TransformerData
    from transformers.file_utils import ModelOutput

    from thinc.api import get_array_module

    last = trf_data.model_output.last_hidden_state
    zeros = ModelOutput(last_hidden_state=get_array_module(last).zeros(last.shape, dtype=last.dtype))
    return TransformerData(model_output=zeros, wordpieces=trf_data.wordpieces, align=trf_data.align)


def _no_backprop(d_outputs: Any) -> Any:
    raise RuntimeError("the bulk layer mix is for prediction only")

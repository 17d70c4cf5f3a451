"""Model architectures of the shipped default pipeline (registered with spaCy's registry).

spaCy finds them through the `spacy_architectures` entry point in pyproject.toml, so a plain
`spacy.load` of the assembled pipeline works without importing corpus-nlp first.
"""

from __future__ import annotations

from spacy.ml.models import MultiHashEmbed
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Maxout, Model, chain, concatenate, with_array
from thinc.types import Floats2d


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

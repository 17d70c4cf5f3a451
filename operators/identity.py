"""A pipeline's identity is its content: the digest of its config and weights.

Name and version are what a person reads (`<lang>_<name>-<version>`, in every output row); the
digest is what an OUTPUT's fingerprint compares, so heads retrained in place (same name, same
version) are another model and are never mixed into an OUTPUT made with the old ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import spacy

from . import errors
from .default_model import NAME, assembled_path

CHUNK = 1 << 20


def pipeline_folder(name: str) -> Path:
    """The folder spacy.load reads for `name` (a path, or an installed package's data folder)."""
    path = Path(name)
    if not path.exists():
        try:
            path = spacy.util.get_package_path(name)
        except (ImportError, OSError, ValueError) as exc:
            raise errors.model_not_found(name, exc) from exc
    configs = sorted(path.rglob("config.cfg"), key=lambda p: len(p.parts))
    if not configs:
        raise errors.model_not_found(name, FileNotFoundError(f"no config.cfg under {path}"))
    return configs[0].parent


def model_digest(name: str) -> str:
    """sha256 over the pipeline folder's files (relative path and bytes). The shipped default's
    digest is that of its heads and the pinned MiniLM package, which is what its assembled folder
    is named by."""
    if name == NAME:
        return assembled_path().name.rsplit("-", 1)[-1]
    folder = pipeline_folder(name)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]

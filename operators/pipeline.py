"""Load one spaCy pipeline and prepare it so its shared embedding can also give sentence vectors.

What preparation does, by embedding kind:
- spacy-transformers `Transformer`: sentence boundaries are set before it (a sentencizer goes first
  unless a component before the transformer already sets them), its spans follow sentences and
  are capped at `max_wordpieces` (a sentence longer than that is split at token boundaries, as
  spaCy's documented custom span getter does, but counting wordpieces, not tokens), and a guard
  splits the rare token whose UTF-8 bytes alone exceed the cap, so no wordpiece is ever dropped.
  With a fast (Rust) tokenizer its prediction pass is replaced by operators/transformer.py's bulk
  one (same outputs; length-sorted forward calls of at most `token_budget` padded wordpieces,
  optionally in bf16).
- spacy-curated-transformers `CuratedTransformer` (en_core_web_trf 3.8): kept as it is. It
  windows over pieces with strided spans, which never truncate.
- `Tok2Vec`: kept as it is; a sentencizer is added only when nothing sets sentence boundaries.

In every pipeline, spaCy's AttributeRuler and rule Lemmatizer are replaced by their bulk versions
where those reproduce them exactly (operators/bulk_rules.py), and components named in `exclude`
are not loaded at all (spaCy's own `exclude`). Every change to a private attribute of spaCy, thinc
or spacy-transformers is made through operators/patches.py.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import spacy
from spacy.language import Language
from spacy.pipeline import Sentencizer, Tagger
from spacy.tokens import Doc, Span
from thinc.api import Model
from thinc.backends import get_array_ops

from . import errors, patches
from .bulk_rules import use_bulk_rules
from .config import DEFAULT_TOKEN_BUDGET, Pooling, Precision
from .doc_arrays import SPANS_KEY, sentence_token_starts, token_offsets
from .pooling import pool_sentences
from .transformer import BulkListenerPooling, BulkTransformerForward

EmbeddingKind = Literal["transformer", "curated_transformer", "tok2vec"]

__all__ = ["SPANS_KEY", "Pipeline", "load_pipeline"]  # SPANS_KEY: doc.user_data key, defined in doc_arrays
GUARD_NAME = "corpus_nlp_split_long_tokens"


@dataclass
class Pipeline:
    nlp: Language
    name: str  # what the user asked for
    model_id: str  # "<lang>_<name>-<version>", recorded in every output row and file
    embedding: EmbeddingKind
    embedding_component: str
    vector_width: int
    use_gpu: bool
    precision: Precision = "fp32"
    span_getter: CappedSentenceSpans | None = None  # spacy-transformers pipelines only
    forward: BulkTransformerForward | None = None  # the bulk transformer pass, where it replaces spacy-transformers'
    annotates: dict[str, bool] = field(default_factory=dict)  # TAG, POS, LEMMA, DEP, ENT_IOB -> bool
    excluded: tuple[str, ...] = ()  # components not loaded (spaCy's exclude)
    bulk_components: tuple[str, ...] = ()  # components replaced by operators/bulk_rules.py
    _device_thread: int = field(default_factory=threading.get_ident, repr=False)

    def ensure_device(self) -> None:
        """thinc's current ops and cupy's device are per thread: re-select the GPU in a new thread.

        Ray may call an actor's methods from a thread other than the one that ran __init__.
        """
        if self.use_gpu and threading.get_ident() != self._device_thread:
            spacy.require_gpu(0)
            self._device_thread = threading.get_ident()

    def pool_sentences(self, doc: Doc, mode: Pooling) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 (n_sents, width), valid (n_sents,)) of the doc's sentences."""
        return pool_sentences(self, doc, mode)

    def sentence_starts(self, text: str) -> list[int]:
        """Char offsets where a rule-based sentencizer starts a sentence in `text` (0 excluded)."""
        doc = _SENTENCIZER(self.nlp.tokenizer(text))
        return [tok.idx for tok in doc if tok.is_sent_start and tok.i > 0]


_SENTENCIZER = Sentencizer()


def load_pipeline(
    name: str,
    *,
    use_gpu: bool,
    max_wordpieces: int,
    precision: Precision = "fp32",
    token_budget: int | None = None,
    exclude: tuple[str, ...] = (),
    bulk: bool = True,
    bulk_rules: bool = True,
) -> Pipeline:
    """Load `name` (package or path) once, on this process's GPU when `use_gpu`, and prepare it.

    token_budget None: DEFAULT_TOKEN_BUDGET for the device. exclude: components not to load (each
    must be one of the pipeline's). bulk=False leaves spacy-transformers' own forward as it is (the
    benchmark's baseline: capped sentence spans, no bulk path, fp32). bulk_rules=False keeps spaCy's
    own AttributeRuler and Lemmatizer (what the bulk ones are tested against).
    """
    if use_gpu:
        try:
            spacy.require_gpu(0)
        except Exception as exc:  # cupy missing or no CUDA device: say what to install
            raise errors.gpu_unavailable(exc) from exc
    from . import architectures  # registers the default pipeline's architectures; its layer mixes are read below
    from .default_model import resolve

    exclude = tuple(exclude)
    if exclude:
        check_exclude(name, exclude)
    try:
        nlp = spacy.load(resolve(name), exclude=list(exclude))
    except (OSError, ImportError) as exc:
        raise errors.model_not_found(name, exc) from exc
    _check_listeners(nlp, name, exclude)

    kind, component = _find_embedding(nlp, name)
    span_getter, forward = None, None
    if kind == "transformer":
        _ensure_sentences_before(nlp, component)
        trf_model = nlp.get_pipe(component).model
        tokenizer = trf_model.tokenizer
        cap = min(max_wordpieces, int(tokenizer.model_max_length))
        span_getter = CappedSentenceSpans(tokenizer, cap)
        patches.set_span_getter(trf_model, span_getter)
        nlp.add_pipe(GUARD_NAME, first=True, config={"max_bytes": span_getter.budget})
        if bulk and tokenizer.is_fast:
            forward = BulkTransformerForward(
                trf_model, span_getter, "cuda" if use_gpu else "cpu",
                max(token_budget or DEFAULT_TOKEN_BUDGET["gpu" if use_gpu else "cpu"], cap), precision == "bf16",
            )
            patches.replace_transformer_forward(trf_model, forward)
            # the whole nlp.pipe batch in one predict: BulkTransformerForward bounds each forward call
            patches.predict_whole_batches(nlp.get_pipe(component))
            for listener_pooling in _listener_poolings(nlp, component):
                patches.replace_listener_pooling(listener_pooling, BulkListenerPooling)
            for mix in _listener_nodes(nlp, component, "trfs2arrays_layer_mix"):  # mixed in the forward pass
                forward.add_mix(mix.id, mix.get_dim("nL"), functools.partial(architectures.mix_coefficients, mix))
        elif precision != "fp32":  # spacy-transformers as it comes has no bf16 (its mixed_precision is fp16)
            raise errors.precision_needs_transformer(name, precision, "a pipeline with a slow (Python) tokenizer")
    elif precision != "fp32":
        raise errors.precision_needs_transformer(name, precision, f"a {kind}")
    elif not any(_sets_sentences(nlp, n) for n in nlp.pipe_names):
        nlp.add_pipe("sentencizer", first=True)

    for _, proc in nlp.pipeline:
        if isinstance(proc, Tagger):  # taggers, senters, morphologizers
            patches.replace_tagger_guesses(proc, argmax_per_doc)
    replaced = tuple(use_bulk_rules(nlp)) if bulk_rules else ()
    meta = nlp.meta
    pipeline = Pipeline(
        nlp=nlp,
        name=name,
        model_id=_model_id(meta),
        embedding=kind,
        embedding_component=component,
        vector_width=0,
        use_gpu=use_gpu,
        precision=precision,
        span_getter=span_getter,
        forward=forward,
        excluded=exclude,
        bulk_components=replaced,
    )
    # One warm-up document: proves the pipeline runs, and tells the embedding width and which
    # token attributes it annotates (the others are written as nulls, not as empty strings).
    probe = nlp("Corpus annotation starts here. It runs in Berlin.")
    vectors, _ = pipeline.pool_sentences(probe, "mean")
    pipeline.vector_width = int(vectors.shape[1])
    pipeline.annotates = {attr: probe.has_annotation(attr) for attr in ("TAG", "POS", "LEMMA", "DEP", "ENT_IOB")}
    return pipeline


def _listener_poolings(nlp: Language, transformer: str) -> list[Any]:
    """The `trfs2arrays` layers (a listener's pooling of wordpieces into token vectors) of the
    components that listen to `transformer`."""
    return _listener_nodes(nlp, transformer, "trfs2arrays")


def _listener_nodes(nlp: Language, transformer: str, layer: str) -> list[Any]:
    """The layers named `layer` in the components other than `transformer`."""
    return [node for name, proc in nlp.pipeline if name != transformer and isinstance(getattr(proc, "model", None), Model)
            for node in proc.model.walk() if node.name == layer]


def argmax_per_doc(scores: list) -> list[np.ndarray]:
    """spaCy's Tagger._scores2guesses (each doc's best class per token, on the host) with one
    device-to-host copy for the whole batch: spaCy copies each doc's guesses on its own, and on a
    GPU shared by several pipelines every such copy waits for the GPU's other work."""
    if not scores:
        return []
    ops = get_array_ops(scores[0])
    guesses = ops.to_numpy(ops.xp.concatenate(scores).argmax(axis=1))
    return np.split(guesses, np.cumsum([len(s) for s in scores])[:-1])


def check_precision(name: str, precision: Precision) -> None:
    """In the driver, before any actor loads it: can `name` run its transformer in `precision`?"""
    if precision == "fp32":
        return
    config = _pipeline_config(name)
    factories = [c.get("factory") for c in config["components"].values()] if config else []
    if "transformer" not in factories:
        raise errors.precision_needs_transformer(name, precision, "components " + ", ".join(map(str, factories)))


def check_exclude(name: str, exclude: tuple[str, ...]) -> None:
    """Does pipeline `name` have every component named in `exclude`? (Read from its config: the
    driver can ask before any actor loads it; spaCy itself ignores names it does not know.)"""
    config = _pipeline_config(name)
    components = list(config["nlp"]["pipeline"]) if config else []
    unknown = [e for e in exclude if e not in components]
    if unknown:
        raise errors.unknown_components(name, unknown, components)


def _pipeline_config(name: str) -> Any:
    """The config.cfg of a pipeline package or folder (None when there is none to read)."""
    from pathlib import Path

    from .default_model import resolve

    try:
        path = Path(resolve(name))
        if not path.exists():
            path = spacy.util.get_package_path(name)
    except (OSError, ImportError) as exc:
        raise errors.model_not_found(name, exc) from exc
    configs = sorted(path.rglob("config.cfg"), key=lambda p: len(p.parts))
    return spacy.util.load_config(configs[0]) if configs else None


def _check_listeners(nlp: Language, name: str, exclude: tuple[str, ...]) -> None:
    """Refuse an exclude that leaves a component listening to an embedding that was not loaded: a
    listener names its upstream component, or "*" for whichever of its kind the pipeline has."""
    kinds_left = {_embedding_kind(proc) for _, proc in nlp.pipeline}
    for excluded in exclude:
        needed_by = []
        for comp, proc in nlp.pipeline:
            if not isinstance(getattr(proc, "model", None), Model):
                continue
            for node in proc.model.walk():
                upstream = getattr(node, "upstream_name", None)
                kind = "transformer" if node.name.startswith("transformer-listener") else "tok2vec"
                if upstream == excluded or (upstream == "*" and kind not in kinds_left and _factory_kind(name, excluded) == kind):
                    needed_by.append(comp)
                    break
        if needed_by:
            raise errors.excluded_needed_component(name, excluded, needed_by)


def _factory_kind(name: str, component: str) -> str | None:
    """"transformer" or "tok2vec" if the excluded `component` is one (read from the pipeline's config)."""
    config = _pipeline_config(name)
    factory = config["components"].get(component, {}).get("factory") if config else None
    return factory if factory in ("transformer", "tok2vec") else None


def model_id(name: str) -> str:
    """`<lang>_<name>-<version>` of a pipeline package or folder, read from its meta.json only."""
    from pathlib import Path

    from .default_model import NAME, heads_dir

    try:
        if name == NAME:  # the heads carry the same meta.json as the assembled pipeline
            path = heads_dir()
        else:
            path = Path(name) if Path(name).exists() else spacy.util.get_package_path(name)
        meta = spacy.util.get_model_meta(path)
    except (OSError, ImportError, ValueError) as exc:
        raise errors.model_not_found(name, exc) from exc
    return _model_id(meta)


def _model_id(meta: dict) -> str:
    return f"{meta.get('lang', 'xx')}_{meta.get('name', 'pipeline')}-{meta.get('version', '0.0.0')}"


def _find_embedding(nlp: Language, name: str) -> tuple[EmbeddingKind, str]:
    found: dict[str, str] = {}
    for comp_name, proc in nlp.pipeline:
        kind = _embedding_kind(proc)
        if kind and kind not in found:
            found[kind] = comp_name
    for kind in ("transformer", "curated_transformer", "tok2vec"):
        if kind in found:
            return kind, found[kind]  # type: ignore[return-value]
    raise errors.no_shared_embedding(name, nlp.pipe_names)


def _embedding_kind(proc: Any) -> EmbeddingKind | None:
    cls = type(proc)
    module = cls.__module__
    if module.startswith("spacy_transformers") and cls.__name__ == "Transformer":
        return "transformer"
    if module.startswith("spacy_curated_transformers") and cls.__name__ == "CuratedTransformer":
        return "curated_transformer"
    from spacy.pipeline import Tok2Vec

    if isinstance(proc, Tok2Vec):
        return "tok2vec"
    return None


def _sets_sentences(nlp: Language, comp_name: str) -> bool:
    return "token.is_sent_start" in nlp.get_pipe_meta(comp_name).assigns


def _ensure_sentences_before(nlp: Language, component: str) -> None:
    before = nlp.pipe_names[: nlp.pipe_names.index(component)]
    if not any(_sets_sentences(nlp, n) for n in before):
        nlp.add_pipe("sentencizer", first=True)


class CappedSentenceSpans:
    """spacy-transformers span getter: one span per sentence, none longer than `max_wordpieces`.

    A sentence whose wordpieces (plus the model's special tokens) exceed the cap is split at token
    boundaries. Every piece covers at least one UTF-8 byte, so a sentence of at most `budget` bytes
    cannot exceed the cap and is not tokenized here at all: only long sentences pay for counting.
    The spans used are recorded in doc.user_data[SPANS_KEY] for pooling.
    """

    def __init__(self, tokenizer: Any, max_wordpieces: int):
        n_special = int(tokenizer.num_special_tokens_to_add(pair=False))
        self.tokenizer = tokenizer
        self.max_wordpieces = max_wordpieces
        # one piece of slack: a sentencepiece word may start with a lone "▁" piece
        self.budget = max_wordpieces - n_special - 1
        if self.budget < 4:
            raise errors.ConfigError(f"max_wordpieces={max_wordpieces} leaves no room for text; use at least 16")

    def __call__(self, docs: list[Doc]) -> list[list[Span]]:
        return [self.doc_spans(doc) for doc in docs]

    def doc_spans(self, doc: Doc) -> list[Span]:
        return [doc[start:end] for start, end in self.ranges(doc).tolist()]

    def ranges(self, doc: Doc, idx: np.ndarray | None = None, length: np.ndarray | None = None,
               text: str | None = None) -> np.ndarray:
        """(n_spans, 2) token ranges: the sentences, long ones split; recorded for pooling.

        `idx`, `length` (doc_arrays.token_offsets) and `text` (doc.text): pass them if already read.
        """
        if idx is None or length is None:
            idx, length = token_offsets(doc)
        text = doc.text if text is None else text
        starts = sentence_token_starts(doc)
        ends, starts = starts[1:], starts[:-1]
        first_char = idx[starts]
        last_char = idx[ends - 1] + length[ends - 1] if len(starts) else first_char
        long = last_char - first_char > self.budget  # bytes >= characters
        if not text.isascii():  # a character has 1 to 4 bytes: only sentences in between need counting
            for i in np.flatnonzero(~long & ((last_char - first_char) * 4 > self.budget)).tolist():
                long[i] = len(text[first_char[i]:last_char[i]].encode("utf-8")) > self.budget
        spans = np.stack([starts, ends], axis=1)
        if long.any():
            pieces = [[(s.start, s.end) for s in self._split(doc[a:b])] if is_long else [(a, b)]
                      for a, b, is_long in zip(starts.tolist(), ends.tolist(), long.tolist())]
            spans = np.array([p for piece in pieces for p in piece], dtype=np.int64)
        spans = spans.reshape(-1, 2).astype(np.int64, copy=False)
        doc.user_data[SPANS_KEY] = spans
        return spans

    def _split(self, sent: Span) -> list[Span]:
        encoding = self.tokenizer(sent.text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        starts = np.array([t.idx - sent.start_char for t in sent], dtype=np.int64)
        # each piece belongs to the token its first char falls in
        owner = np.searchsorted(starts, offsets[:, 0], side="right") - 1
        pieces = np.bincount(owner.clip(0), minlength=len(sent))
        limit = self.budget - 2  # a split start can tokenize a piece or two differently
        spans: list[Span] = []
        start, used = 0, 0
        for i, n in enumerate(pieces.tolist()):
            if used + n > limit and i > start:
                spans.append(sent[start:i])
                start, used = i, 0
            used += n
        spans.append(sent[start:])
        return spans


@Language.factory(GUARD_NAME, default_config={"max_bytes": 250})
def make_long_token_guard(nlp: Language, name: str, max_bytes: int):
    return LongTokenGuard(max_bytes)


class LongTokenGuard:
    """Split any token longer than `max_bytes` UTF-8 bytes, so no span exceeds the wordpiece cap.

    Only tokens of hundreds of characters without a space (base64, minified data) qualify; the
    text and every character offset stay the same.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes

    def __call__(self, doc: Doc) -> Doc:
        _, length = token_offsets(doc)
        candidates = np.flatnonzero(length * 4 > self.max_bytes)  # a character has at most 4 bytes
        if not any(len(doc[int(i)].text.encode("utf-8")) > self.max_bytes for i in candidates):
            return doc
        words: list[str] = []
        spaces: list[bool] = []
        for token in doc:
            pieces = _byte_chunks(token.text, self.max_bytes)
            words.extend(pieces)
            spaces.extend([False] * (len(pieces) - 1) + [bool(token.whitespace_)])
        split = Doc(doc.vocab, words=words, spaces=spaces)
        split.user_data.update(doc.user_data)  # the same text
        return split


def _byte_chunks(text: str, max_bytes: int) -> list[str]:
    chunks, current, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > max_bytes and current:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += n
    chunks.append("".join(current))
    return chunks

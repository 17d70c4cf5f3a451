"""The annotation operator: Arrow batch of (id, text[, source]) in, one annotated row per document out.

Each pipeline actor holds one (operators/unit_annotator.py); tests and `search` call it directly.
It holds one spaCy pipeline, loaded once in __init__, inside the process that uses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from . import errors
from .config import DEFAULT_BATCH_CHARS, AnnotatorConfig
from .doc_arrays import make_docs
from .extract import DocumentResult, SegmentAnnotations, annotate_segment, build_annotated_table
from .pipeline import Pipeline, load_pipeline
from .segment import segment_bounds

log = logging.getLogger(__name__)

PATH_COLUMN = "source"  # the input file of each row (operators/units.py writes it)
# Fault injection for tests (read once per actor): JSON {"delay_s": seconds before every nlp.pipe
# call, "oom_above": raise a MemoryError for any nlp.pipe call of more texts than this}.
FAULTS_ENV = "CORPUS_NLP_FAULTS"
MAX_ERROR_CHARS = 2_000


@dataclass(frozen=True)
class _Segment:
    """A text, or one segment of a long text (operators/segment.py), as it is piped."""

    doc: int  # index of the document in the batch
    offset: int  # char offset of this segment in the document's text
    text: str


class Annotator:
    """`Annotator(config)(batch) -> annotated batch` (schema: operators.schema.annotated_schema).

    It keeps a running count of where its time goes (always on; two clock reads per call and per
    transformer forward call): `seconds` in its calls, `forward_seconds()` of those in the
    transformer's forward passes (operators/transformer.py; 0 for a pipeline without the bulk pass),
    `host_seconds()` the rest, and `words` (tokens that are not whitespace) annotated.
    """

    def __init__(self, config: AnnotatorConfig, use_gpu: bool = False, pipeline: Pipeline | None = None):
        """`pipeline`: an already loaded one, for tests that compare pipelines; else loaded from `config`."""
        self.config = config
        self.pipeline: Pipeline = pipeline or load_pipeline(
            config.model, use_gpu=use_gpu, max_wordpieces=config.max_wordpieces,
            precision=config.precision, token_budget=config.token_budget, exclude=config.excluded,
        )
        # texts are piped in groups of at most this many chars, and a longer text is cut (at sentence
        # starts) into segments no longer than a group, so an actor's memory follows --batch-chars,
        # not the longest document of the corpus
        self.group_chars = config.batch_chars or DEFAULT_BATCH_CHARS["gpu" if use_gpu else "cpu"]
        self.segment_chars = min(config.segment_limit, self.pipeline.nlp.max_length)
        # tests inject faults here: called with the texts of every nlp.pipe call before it runs
        self.before_pipe: Callable[[list[str]], None] | None = faults_from_env()
        self.kernels = host_kernels(self.pipeline)
        self.seconds = 0.0
        self.words = 0
        self._forward = self.pipeline.forward
        self._forward_start = self._forward.seconds if self._forward is not None else 0.0

    def forward_seconds(self) -> float:
        """Seconds of this Annotator's calls spent in the transformer's forward passes (the model's
        calls, and on a GPU the pooling sums and their one copy back; 0 without the bulk pass)."""
        return self._forward.seconds - self._forward_start if self._forward is not None else 0.0

    def host_seconds(self) -> float:
        """Seconds of this Annotator's calls outside the transformer's forward passes."""
        return self.seconds - self.forward_seconds()

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = time.perf_counter()
        try:
            table = self._annotate(batch)
        finally:
            self.seconds += time.perf_counter() - start
        self.words += int(pc.sum(table.column("n_words")).as_py() or 0)
        return table

    def _annotate(self, batch: pa.Table) -> pa.Table:
        self.pipeline.ensure_device()
        texts, text_errors = decode_texts(batch.column(self.config.text_column), self.config.text_column)
        if PATH_COLUMN in batch.column_names:
            sources = batch.column(PATH_COLUMN).combine_chunks().cast(pa.string())
        else:
            sources = pa.nulls(batch.num_rows, pa.string())
        doc_ids = batch.column(self.config.id_column).combine_chunks()
        # Until the vocab holds config.keep_strings strings, the words of a batch stay (frequent
        # words then cost no new lexeme later). After that, strings that these texts add to the vocab
        # (and lexemes) live only as long as the zone, so an actor that meets millions of distinct
        # words keeps a bounded vocab. The table is built inside it: token strings are looked up by hash.
        nlp = self.pipeline.nlp
        zone = nlp.memory_zone() if len(nlp.vocab.strings) >= self.config.keep_strings else contextlib.nullcontext()
        with zone:
            results = self.annotate_texts(texts, text_errors)
            table = build_annotated_table(doc_ids, sources, results, self.pipeline)
        release_free_memory()
        return table

    def annotate_texts(self, texts: list[str | None], text_errors: list[str | None] | None = None) -> list[DocumentResult]:
        text_errors = text_errors or [None] * len(texts)
        segments: list[_Segment] = []
        for i, (text, problem) in enumerate(zip(texts, text_errors)):
            if problem is None and text is not None:
                bounds = segment_bounds(text, self.segment_chars, self.pipeline.sentence_starts)
                segments.extend(_Segment(i, a, text[a:b]) for a, b in bounds)
        annotated: list[SegmentAnnotations | str] = []
        for group in _groups(segments, self.config.batch_size, self.group_chars):
            annotated.extend(self._annotate_segments(group))

        per_doc: list[list[SegmentAnnotations]] = [[] for _ in texts]
        failures: list[str | None] = list(text_errors)
        for i, text in enumerate(texts):
            if text is None and failures[i] is None:
                failures[i] = "text is null"
        for segment, result in zip(segments, annotated):
            if isinstance(result, str):
                failures[segment.doc] = failures[segment.doc] or result
            else:
                per_doc[segment.doc].append(result)
        return [
            DocumentResult(n_chars=len(text or ""), segments=[] if failure else segs, error=failure)
            for text, segs, failure in zip(texts, per_doc, failures)
        ]

    def _annotate_segments(self, segments: list[_Segment]) -> list[SegmentAnnotations | str]:
        """Pipe `segments`; if the batch fails (bad document, out of memory), halve it and retry.

        A document that fails on its own becomes an error string; the others are annotated. Empty
        texts are not piped: a Doc without tokens has no embedding for the components that listen
        to one, and spaCy fails the batch it is in.
        """
        nlp = self.pipeline.nlp
        piped = [s for s in segments if s.text]
        texts = [s.text for s in piped]
        try:
            if self.before_pipe is not None:
                self.before_pipe(texts)
            with self.kernels():
                docs = iter(list(nlp.pipe(make_docs(nlp, texts), batch_size=len(texts))) if texts else [])
        except Exception as exc:  # recorded per document below, never swallowed
            if len(segments) == 1:
                log.warning("document failed: %s", describe(exc))
                return [describe(exc)]
            log.info("batch of %d failed (%s); retrying in halves", len(segments), describe(exc))
            mid = len(segments) // 2
            return self._annotate_segments(segments[:mid]) + self._annotate_segments(segments[mid:])
        out: list[SegmentAnnotations | str] = []
        for segment in segments:
            doc = next(docs) if segment.text else nlp.make_doc("")
            try:
                out.append(annotate_segment(self.pipeline, doc, segment.offset, self.config.pooling))
            except Exception as exc:  # recorded as this document's error
                log.warning("extraction failed: %s", describe(exc))
                out.append(describe(exc))
        return out


def host_kernels(pipeline: Pipeline) -> Callable[[], contextlib.AbstractContextManager]:
    """What every nlp.pipe call runs under: for an fp32 transformer on the CPU, torch without oneDNN.

    oneDNN (behind torch's CPU GELU) caches a primitive per input shape, up to 1,024, for the life of
    the process, and the bulk pass meets a new shape with almost every forward call. Made all through
    a run, these small long-lived allocations land among the batches' transient arrays, so glibc's
    heap can neither reuse nor return the holes between them. With torch's own kernel the heap stays
    flat through a run, and the run is as fast (docs/performance.md).
    bf16 on the CPU keeps oneDNN (its matrix products run there).
    """
    if pipeline.use_gpu or pipeline.embedding == "tok2vec" or pipeline.precision != "fp32":
        return contextlib.nullcontext
    return _without_onednn


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    import torch

    mkldnn = torch.backends.mkldnn  # one switch for the process, put back after the batch
    was = mkldnn.enabled
    mkldnn.enabled = False
    try:
        yield
    finally:
        mkldnn.enabled = was


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the heap pages that a batch's Docs and arrays freed back to the OS (glibc keeps them).

    Without it an actor's RSS can stay near the high-water mark of its largest batch so far. In the
    Ray actors Arrow's buffers come from this heap too (jobs.annotate.worker_env).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def faults_from_env() -> Callable[[list[str]], None] | None:
    spec = os.environ.get(FAULTS_ENV)
    if not spec:
        return None
    faults = json.loads(spec)
    log.warning("fault injection is on: %s", faults)

    def inject(texts: list[str]) -> None:
        time.sleep(float(faults.get("delay_s", 0)))
        if "oom_above" in faults and len(texts) > int(faults["oom_above"]):
            raise MemoryError(f"simulated out of memory for a batch of {len(texts)}")

    return inject


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def decode_texts(column: pa.ChunkedArray, name: str) -> tuple[list[str | None], list[str | None]]:
    """Python strings from a string or binary column; undecodable binary becomes a per-row error."""
    type_ = column.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return column.to_pylist(), [None] * len(column)
    if not (pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_binary_view(type_)):
        raise errors.bad_text_type(name, type_)
    texts: list[str | None] = []
    problems: list[str | None] = []
    for value in column.to_pylist():
        if value is None:
            texts.append(None)
            problems.append(None)
            continue
        try:
            texts.append(value.decode("utf-8"))
            problems.append(None)
        except UnicodeDecodeError as exc:
            texts.append(None)
            problems.append(f"text is not valid UTF-8: byte {exc.start} ({value[exc.start:exc.start + 1]!r}) {exc.reason}")
    return texts, problems


def _groups(segments: list[_Segment], max_segments: int, max_chars: int) -> list[list[_Segment]]:
    groups: list[list[_Segment]] = []
    current: list[_Segment] = []
    chars = 0
    for segment in segments:
        if current and (len(current) >= max_segments or chars + len(segment.text) > max_chars):
            groups.append(current)
            current, chars = [], 0
        current.append(segment)
        chars += len(segment.text)
    if current:
        groups.append(current)
    return groups

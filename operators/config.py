"""The configuration of a run, validated where it enters (CLI, job entry point, tests).

Two parts: `AnnotatorConfig`, what a pipeline actor needs to annotate text (also what `search`
needs to embed a query), and `RunConfig`, where the text comes from and goes to and how the run
is scheduled and committed. The CLI's options are generated from these fields (jobs/annotate.py),
so each option has one default and one help text: the field's description.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

DEFAULT_MODEL = "corpus_nlp_minilm"  # operators/default_model.py: MiniLM + heads trained on EWT

# How a sentence vector is pooled from a transformer's wordpiece rows:
#   "mean"         every wordpiece of the sentence's window(s), special tokens included: what
#                  sentence-transformers' mean pooling computes, so vectors match model.encode()
#   "mean_content" only the wordpieces of the sentence's own text (special tokens excluded)
# A Tok2Vec pipeline has no special tokens; both modes average its token vectors.
Pooling = Literal["mean", "mean_content"]
# Transformer forward pass: fp32, or bf16 autocast with float32 hidden states out
# (operators/transformer.py). spacy-transformers' own `mixed_precision` (fp16 with a grad scaler)
# is not used.
Precision = Literal["fp32", "bf16"]
# Padded wordpieces per transformer forward call, spans sorted by length (operators/transformer.py).
# A CPU runs small, cache-sized calls fastest; a GPU needs large ones to be busy
# (docs/performance.md has the measurements behind both).
DEFAULT_TOKEN_BUDGET = {"cpu": 1_024, "gpu": 16_384}
# Characters per nlp.pipe batch: an actor's memory follows the text of its current batch, so this
# bounds an actor's peak whatever documents the corpus holds; a GPU needs bigger batches to be busy.
DEFAULT_BATCH_CHARS = {"cpu": 50_000, "gpu": 200_000}
# An actor's vocab keeps the strings (and lexemes) of the words it meets until it holds this many;
# after that every batch runs in spaCy's memory zone, which frees the strings the batch added. The
# frequent words are met early and stay, and an actor's vocab stays bounded however large the corpus.
KEEP_STRINGS = 500_000


class AnnotatorConfig(BaseModel):
    """What one pipeline actor needs: the model, the columns, and how text is batched and pooled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="spaCy pipeline: an installed package name or a path saved with nlp.to_disk")
    text_column: str = Field("text", description="input column holding the text")
    id_column: str = Field("id", description="input column holding the document id (its type is kept)")
    batch_size: int = Field(64, ge=1, description="documents per nlp.pipe batch")
    batch_chars: int | None = Field(
        None, ge=1_000,
        description="characters per nlp.pipe batch at most, bounding an actor's memory; default 50000 on CPU, 200000 on GPU",
    )
    max_wordpieces: int = Field(256, ge=8, description="longest transformer window, special tokens included")
    segment_chars: int = Field(
        50_000, ge=1_000,
        description="texts longer than this (or than --batch-chars) are cut at sentence starts and annotated in segments",
    )
    pooling: Pooling = Field("mean", description="sentence vectors: mean (all wordpieces of the window, as sentence-transformers) or mean_content")
    precision: Precision = Field("fp32", description="transformer forward pass: fp32, or bf16 autocast (spacy-transformers pipelines)")
    token_budget: int | None = Field(
        None, ge=64, description="padded wordpieces per transformer forward call (spans sorted by length); default 1024 on CPU, 16384 on GPU",
    )
    keep_strings: int = Field(
        KEEP_STRINGS, ge=0,
        description="strings an actor's vocab keeps for good (frequent words stay fast); past this, each batch's new strings are freed after it",
    )
    exclude: str = Field(
        "", description="pipeline components not to load, comma-separated (spaCy's exclude), e.g. parser,lemmatizer; "
        "the columns only they fill are written as nulls (docs/schema.md)",
    )

    @field_validator("exclude", mode="before")
    @classmethod
    def _component_names(cls, value: object) -> object:
        """Names as "a,b" (a list or tuple of names is accepted too): blanks and repeats dropped."""
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        if isinstance(value, str):
            value = ",".join(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
        return value

    @property
    def excluded(self) -> tuple[str, ...]:
        """The components named in `exclude`."""
        return tuple(name for name in self.exclude.split(",") if name)

    @field_validator("model", "text_column", "id_column")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _columns_differ(self) -> AnnotatorConfig:
        if self.text_column == self.id_column:
            raise ValueError("text_column and id_column must be different columns")
        return self

    @property
    def segment_limit(self) -> int:
        """Texts longer than this are cut at sentence starts: segment_chars, lowered to batch_chars so
        that no segment outgrows a batch. It must not depend on the device (where texts are cut
        changes their rows), so a device's default batch_chars does not lower it."""
        return min(self.segment_chars, self.batch_chars or self.segment_chars)

    def output_settings(self) -> dict[str, Any]:
        """The settings that change an annotation's rows (beside the model itself)."""
        return {
            "text_column": self.text_column,
            "max_wordpieces": self.max_wordpieces,
            "segment_chars": self.segment_limit,
            "pooling": self.pooling,
            "precision": self.precision,
            "exclude": ",".join(sorted(self.excluded)),
        }


class RunConfig(BaseModel):
    """One run: INPUT, OUTPUT, the annotator, and how the work is cut, placed and committed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str = Field(description="Parquet file, folder (searched recursively) or glob; local path or fsspec URL such as s3://...")
    output: str = Field(description="folder or URL that receives the Delta tables documents, tokens, entities, sentences")
    annotator: AnnotatorConfig = Field(default_factory=AnnotatorConfig)
    address: str | None = Field(
        None, description="Ray cluster to join (auto or ray://host:10001); default: the Ray already running here, else start one for the run",
    )
    actors: int | None = Field(
        None, ge=1, description="pipeline actors; default: several per GPU (one per CPU of a GPU node, see docs/how-it-works.md), else one per CPU",
    )
    gpus_per_actor: float | None = Field(
        None, ge=0, description="GPU share per actor (0 = CPU; 0.25 = four pipelines per GPU); default: planned from the GPU nodes' CPUs",
    )
    unit_mb: float = Field(
        4.0, gt=0,
        description="input text per unit of work, retry and commit, at most (MB); units shrink towards the end of a run so every actor stays busy",
    )
    commit_interval: float = Field(
        15.0, ge=0, description="seconds between commit rounds (finished units become visible in OUTPUT); 0 commits every unit at once",
    )
    target_file_mb: int = Field(128, ge=1, description="size of the output's data files after compaction at the end of a run (MB)")
    retention_hours: float = Field(
        168.0, ge=0, description="VACUUM after a run keeps the files of the table versions of this many hours (time travel reaches that far)",
    )
    resume: bool = Field(False, description="finish an interrupted run, and take in what changed in INPUT (what nightly does)")
    overwrite: bool = Field(False, description="delete what OUTPUT holds and start over")
    break_lock: bool = Field(False, description="take OUTPUT's lock even if its holder may be alive")
    fail_on_bad_input: bool = Field(False, description="fail the run on an unreadable input file instead of skipping it")
    force_cpu: bool = Field(False, description="run pipelines on the CPU even where Ray assigns GPUs (to test placement)")
    actor_start_timeout: int = Field(
        900, ge=1, description="seconds every pipeline actor gets to start and load its pipeline; then the run fails with a message",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_annotator_options(cls, values: Any) -> Any:
        """Accept the annotator's options flat, as the CLI and most callers give them."""
        if isinstance(values, dict):
            moved = {k: values[k] for k in AnnotatorConfig.model_fields if k in values}
            if moved:
                values = {k: v for k, v in values.items() if k not in moved}
                base = values.get("annotator") or {}
                base = base.model_dump() if isinstance(base, AnnotatorConfig) else dict(base)
                values["annotator"] = {**base, **moved}
        return values

    @field_validator("input", "output")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("gpus_per_actor")
    @classmethod
    def _whole_or_fraction(cls, value: float | None) -> float | None:
        if value is not None and value > 1 and value != int(value):
            raise ValueError("a pipeline runs on one device: use a fraction up to 1, or a whole number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")
        return self

    @property
    def model(self) -> str:
        return self.annotator.model

    @property
    def max_unit_bytes(self) -> int:
        return max(1, int(self.unit_mb * 1_000_000))

    def fingerprint(self, model_id: str, model_digest: str, schema_version: str) -> dict[str, Any]:
        """What every row of an OUTPUT shares: mixing any of these would mix incomparable rows. The
        model is identified by its content (config and weights), not only its name and version."""
        return {"schema_version": schema_version, "model": model_id, "model_digest": model_digest,
                **self.annotator.output_settings()}

    def unit_fingerprint(self, fingerprint: dict[str, Any]) -> str:
        """Part of every unit key."""
        return json.dumps({**fingerprint, "id_column": self.annotator.id_column}, sort_keys=True)

    @classmethod
    def build(cls, **options: object) -> RunConfig:
        """Validate options, turning pydantic's report into one ConfigError that names each field."""
        try:
            return cls(**options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'] if p != 'annotator') or 'options'}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid options: {problems}") from None



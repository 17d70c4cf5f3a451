"""`corpus-nlp annotate` and `python -m jobs.annotate`: Parquet in, four Parquet tables out, on Ray.

The wiring is all Ray Data: read_parquet (two columns) -> map_batches(Annotator actors, one
pipeline each, on a GPU when there is one) -> map_batches(write_shard tasks) -> the driver
consumes one small stats row per written shard for progress and the summary.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Annotated

import ray
import typer
from rich.console import Console

from operators.annotate import Annotator
from operators.config import DEFAULT_MODEL, AnnotateConfig
from operators.errors import CorpusNLPError
from operators.inputs import inspect_inputs
from operators.writer import prepare_output, write_shard

# Model hubs are never reached from actors: pipelines and weights are installed on every node.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
IO_TASK_CPUS = 0.25  # parquet read and write tasks are light; they must fit beside the actors
# Ray Data's file listing task asks for a whole CPU, and it runs after the actors have started
LISTING_CPUS = 1.0
MAX_ERRORS_SHOWN = 5


@dataclass
class RunSummary:
    output: str
    model: str
    documents: int = 0
    errors: int = 0
    tokens: int = 0
    words: int = 0
    sentences: int = 0
    entities: int = 0
    seconds: float = 0.0
    actors: int = 0
    gpus_per_actor: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "words_per_second": round(self.words_per_second, 1)}


@dataclass(frozen=True)
class Placement:
    actors: int
    gpus_per_actor: float
    cpus_per_actor: float


def plan_placement(config: AnnotateConfig, resources: dict[str, float]) -> Placement:
    """How many pipeline actors, and what each asks Ray for.

    With GPUs (or --gpus-per-actor > 0): one actor per GPU share, one CPU each. CPU only: one
    actor per CPU, each asking for less than a whole logical CPU so that Ray Data's listing, read
    and write tasks still fit beside them (otherwise the actors would hold every CPU and reading
    would starve). Logical CPUs only gate scheduling: each actor still keeps one core busy.
    """
    n_gpus = resources.get("GPU", 0.0)
    n_cpus = resources.get("CPU", 1.0)
    gpus = config.gpus_per_actor if config.gpus_per_actor is not None else (1.0 if n_gpus >= 1 else 0.0)
    if gpus > 0:
        actors = config.actors or max(1, math.floor(n_gpus / gpus))
        return Placement(actors, gpus, 1.0)
    actors = config.actors or max(1, int(n_cpus))
    spare = LISTING_CPUS + 2 * IO_TASK_CPUS
    cpus = max(0.1, min(1.0, (n_cpus - spare) / actors))
    return Placement(actors, 0.0, round(cpus, 3))


def build_dataset(config: AnnotateConfig, files: list[str], placement: Placement) -> ray.data.Dataset:
    ds = ray.data.read_parquet(
        files,
        columns=[config.id_column, config.text_column],
        include_paths=True,
        num_cpus=IO_TASK_CPUS,
    )
    # a Parquet file is read as one block; streaming repartition into batch-sized blocks lets
    # every actor take work (without it, one file keeps one actor busy and the others idle)
    ds = ds.repartition(target_num_rows_per_block=config.batch_size)
    ds = ds.map_batches(
        Annotator,
        fn_constructor_kwargs={"config": config, "use_gpu": placement.gpus_per_actor > 0},
        batch_size=config.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=placement.actors),
        num_gpus=placement.gpus_per_actor or None,
        num_cpus=placement.cpus_per_actor,
        runtime_env={"env_vars": WORKER_ENV},
    )
    return ds.map_batches(
        write_shard,
        fn_kwargs={"output": config.output, "pooling": config.pooling},
        batch_size=None,
        batch_format="pyarrow",
        num_cpus=IO_TASK_CPUS,
    )


def run(config: AnnotateConfig, console: Console | None = None) -> RunSummary:
    """Annotate config.input into config.output; the CLI, the Ray job and the tests all call this."""
    console = console or Console(stderr=True)
    inputs = inspect_inputs(config.input, config.text_column, config.id_column)
    prepare_output(config.output)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=config.address, include_dashboard=False, log_to_driver=True)
    try:
        placement = plan_placement(config, ray.cluster_resources())
        console.print(
            f"[bold]corpus-nlp[/] annotating {len(inputs.files)} file(s) with {config.model}: "
            f"{placement.actors} actor(s), {placement.gpus_per_actor:g} GPU each"
        )
        summary = RunSummary(
            output=config.output, model=config.model, actors=placement.actors, gpus_per_actor=placement.gpus_per_actor
        )
        start = last_report = time.perf_counter()
        for stats in build_dataset(config, inputs.files, placement).iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in stats.to_pylist():
                summary.documents += row["documents"]
                summary.errors += row["errors"]
                summary.tokens += row["tokens"]
                summary.words += row["words"]
                summary.sentences += row["sentences"]
                summary.entities += row["entities"]
                if row["first_error"] and len(summary.first_errors) < MAX_ERRORS_SHOWN:
                    summary.first_errors.append(row["first_error"])
            summary.seconds = time.perf_counter() - start
            if summary.seconds - (last_report - start) >= 10:
                last_report = time.perf_counter()
                console.print(
                    f"  {summary.documents:,} documents, {summary.words:,} words, "
                    f"{summary.words_per_second:,.0f} words/s, {summary.errors} errors"
                )
        summary.seconds = time.perf_counter() - start
    finally:
        if started_ray:
            ray.shutdown()
    print_summary(summary, console)
    return summary


def print_summary(summary: RunSummary, console: Console) -> None:
    console.print(
        f"[bold green]done[/] {summary.documents:,} documents ({summary.errors} errors), "
        f"{summary.tokens:,} tokens, {summary.sentences:,} sentences, {summary.entities:,} entities "
        f"in {summary.seconds:.1f} s: {summary.words_per_second:,.0f} words/s -> {summary.output}"
    )
    for message in summary.first_errors:
        console.print(f"  [red]error[/] {message}")


def command(
    input: Annotated[str, typer.Argument(help="Parquet file, folder or glob (local path or fsspec URL such as s3://...)")],
    output: Annotated[str, typer.Argument(help="Folder that receives documents/, tokens/, entities/, sentences/")],
    model: Annotated[str, typer.Option(help="spaCy pipeline: installed package name or path")] = DEFAULT_MODEL,
    text_column: Annotated[str, typer.Option(help="Column holding the text")] = "text",
    id_column: Annotated[str, typer.Option(help="Column holding the document id (its type is kept)")] = "id",
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (auto or ray://host:10001); default: start a local Ray")] = None,
    actors: Annotated[int | None, typer.Option(help="Pipeline actors; default: one per GPU, else one per CPU")] = None,
    gpus_per_actor: Annotated[float | None, typer.Option(help="GPU share per actor (0 = CPU); default: 1 if the cluster has GPUs")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents per actor call and nlp.pipe batch")] = 64,
    max_wordpieces: Annotated[int, typer.Option(help="Longest transformer window, special tokens included")] = 256,
    segment_chars: Annotated[int, typer.Option(help="Texts longer than this are cut at sentence boundaries")] = 100_000,
    pooling: Annotated[str, typer.Option(help="mean (all wordpieces of the window, as sentence-transformers) or mean_content")] = "mean",
) -> None:
    """Annotate a Parquet corpus: tokens, entities, sentences with pooled vectors, documents."""
    try:
        config = AnnotateConfig.build(
            input=input, output=output, model=model, text_column=text_column, id_column=id_column,
            address=address, actors=actors, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
            max_wordpieces=max_wordpieces, segment_chars=segment_chars, pooling=pooling,
        )
        summary = run(config)
    except CorpusNLPError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if summary.documents and summary.errors == summary.documents:
        raise typer.Exit(1)


def main() -> None:
    typer.run(command)


if __name__ == "__main__":
    main()

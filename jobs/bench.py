"""`corpus-nlp bench`: in one run, on one machine, the same texts through the same pipeline:

1. baseline   single-process `nlp.pipe` (best of several batch sizes); on CPU also n_process=2
2. corpus-nlp end to end, Parquet in -> Delta out through Ray, Ray's start included, once per
              input layout (`--layout`: written as polars, pyarrow or Spark-like many files write
              them) or on a given `--input` as it is
3. limit      the pipeline's transformer alone, bf16 autocast, 128-wordpiece windows sorted by
              length (skipped for a Tok2Vec pipeline)

It prints words/s (words = non-whitespace tokens), the ratios 2/1 and 2/3, how busy the actors
were, what planning, commits and compaction cost, peak GPU memory and the peak RSS of the process
tree (the driver, Ray and its workers), and writes JSON and a PNG.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from operators.annotate import release_free_memory
from operators.config import DEFAULT_MODEL, RunConfig
from operators.default_model import minilm_dir

DEFAULT_DOCS = "../shared/data/ewt/docs.jsonl"
LAYOUTS = "polars (one file, polars' defaults), row-groups-N (one file, N-row groups), files-N (N files)"
BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "ewt_sample.parquet"
SHAPES = {  # random-weight transformers of these shapes, with the MiniLM tokenizer
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "minilm": {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536},
    "tiny": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
}

SHAPED_CONFIG = """
[nlp]
lang = "en"
pipeline = {pipeline}

[components]

[components.transformer]
factory = "transformer"

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{name}"
mixed_precision = false

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.sent_spans.v1"

[components.transformer.model.tokenizer_config]
use_fast = true

[components.tagger]
factory = "tagger"

[components.tagger.model]
@architectures = "spacy.Tagger.v2"

[components.tagger.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
pooling = {{"@layers":"reduce_mean.v1"}}

[components.parser]
factory = "parser"

[components.parser.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "parser"
hidden_width = 64
maxout_pieces = 2
use_upper = true

[components.parser.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
pooling = {{"@layers":"reduce_mean.v1"}}

[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
hidden_width = 64
maxout_pieces = 2
use_upper = true

[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
pooling = {{"@layers":"reduce_mean.v1"}}
"""


def build_random_bert(path: Path, **shape: int) -> Path:
    """A random-weight BERT of `shape` with all-MiniLM-L6-v2's tokenizer, saved offline."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **shape)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_shaped_pipeline(path: Path, shape: str, parser: bool = True) -> str:
    """transformer (random, `shape`) + tagger [+ parser] + ner listening to it, heads initialised."""
    import spacy
    from spacy.training import Example
    from thinc.api import Config

    bert = build_random_bert(path / "bert", **SHAPES[shape])
    names = ["transformer", "tagger", *(["parser"] if parser else []), "ner"]
    config = Config().from_str(SHAPED_CONFIG.format(name=str(bert), pipeline=json.dumps(names)))
    if not parser:
        del config["components"]["parser"]
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.meta["name"] = f"random_{shape.replace('-', '_')}"
    doc = nlp.make_doc("Alice visited Paris with Bob .")
    example = Example.from_dict(
        doc, {"tags": ["NNP", "VBD", "NNP", "IN", "NNP", "."], "entities": ["U-PER", "O", "U-LOC", "O", "U-PER", "O"],
              "heads": [1, 1, 1, 1, 3, 1], "deps": ["nsubj", "ROOT", "dobj", "prep", "pobj", "punct"]}
    )
    for name in ("parser", "ner"):
        if name in nlp.pipe_names:  # spaCy 3.8.18 does not take transition labels from initialize's examples
            for label in ({"nsubj", "dobj", "prep", "pobj", "punct"} if name == "parser" else {"PER", "LOC"}):
                nlp.get_pipe(name).add_label(label)
    nlp.initialize(lambda: [example])
    nlp.to_disk(path / "pipeline")
    return str(path / "pipeline")


def build_tok2vec_tiny(path: Path) -> str:
    """A near-free pipeline: blank English and a 32-wide Tok2Vec (random weights), so what a run
    measures is corpus-nlp's own cost: reading, scheduling, writing, committing."""
    import spacy

    nlp = spacy.blank("en")
    nlp.meta["name"] = "tok2vec_tiny"
    nlp.add_pipe("tok2vec", config={"model": {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": 32, "attrs": ["NORM", "SHAPE"],
                  "rows": [500, 50], "include_static_vectors": False},
        "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": 32, "depth": 1, "window_size": 1, "maxout_pieces": 2},
    }})
    nlp.initialize()
    nlp.to_disk(path)
    return str(path)


def load_sentences(source: str, words: int, documents: int | None = None) -> list[str]:
    """EWT's sentences (the `# text` lines of the CoNLL-U files beside `source`), one document each,
    in one fixed shuffled order, repeated until they hold about `words` words."""
    folder = Path(source).parent
    base = [line[len("# text = "):].strip() for name in ("en_ewt-ud-train.conllu", "en_ewt-ud-dev.conllu")
            if (folder / name).exists() for line in open(folder / name, encoding="utf-8") if line.startswith("# text = ")]
    if not base:
        raise typer.BadParameter(f"--texts sentences needs EWT's CoNLL-U files beside {source}")
    return _repeat(base, words, documents)


def load_texts(source: str, words: int, documents: int | None = None) -> list[str]:
    """EWT documents (CC BY-SA 4.0) in one fixed shuffled order, repeated until they hold about
    `words` words. Shuffled because the file's own order starts with its longest documents (its
    first 49 hold 60,000 words, a third of all): a small corpus then has the mix of lengths that a
    large one has, and memory or speed compared across sizes compares the same kind of text."""
    if Path(source).exists():
        with open(source, encoding="utf-8") as handle:
            base = [json.loads(line)["text"] for line in handle]
    else:
        base = pq.read_table(BUNDLED_SAMPLE, columns=["text"]).column("text").to_pylist()
    return _repeat(base, words, documents)


def _repeat(base: list[str], words: int, documents: int | None = None) -> list[str]:
    """`base` in one fixed shuffled order, repeated until `words` words (or `documents` texts)."""
    base = list(base)
    random.Random(0).shuffle(base)
    texts, count = [], 0
    while count < words and (documents is None or len(texts) < documents):
        for text in base:
            texts.append(text)
            count += len(text.split())
            if count >= words or (documents is not None and len(texts) >= documents):
                break
    return texts


ABSENT = -1  # PeakRSS: no process of that kind at that sample


class PeakRSS:
    """Peak resident memory of this process and all its descendants (Ray's processes included),
    in total and per kind of process (`by_kind`: each kind's own peak, to see what grows)."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.gpus = _nvml_devices()
        self.gpu_peak: int | None = 0 if self.gpus else None  # bytes used on the GPUs, all processes
        # Kept in arrays, 8 bytes a number: this process is the run's driver, and a list of tuples and
        # dicts (640 bytes a sample, 5 samples a second) made its memory grow with the run's length.
        self._seconds = array("d")  # since the start
        self.clock = array("d")  # epoch seconds, to place a sample in a run's processing
        self._totals = array("q")  # bytes, all processes
        self._kinds: dict[str, array] = {}  # bytes of each kind of process; ABSENT where none ran
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def kind(proc: psutil.Process, root: psutil.Process) -> str:
        """driver, pipeline actors, other Ray workers, raylet, gcs_server, or other."""
        if proc.pid == root.pid:
            return "driver"
        name = proc.name()
        if name in ("raylet", "gcs_server"):
            return name
        title = " ".join(proc.cmdline())
        if title.startswith("ray::") and ("MapWorker" in title or "UnitAnnotator" in title):
            return "pipeline actors"
        if title.startswith("ray::"):
            return "other Ray workers"
        return "other"

    def _sample(self) -> int:
        root = psutil.Process()
        total, kinds = 0, {}
        for proc in [root, *root.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss
                kind = self.kind(proc, root)
            except psutil.Error:  # the process ended between listing and reading it
                continue
            total += rss
            kinds[kind] = kinds.get(kind, 0) + rss
        if self.gpus:
            import pynvml

            used = sum(pynvml.nvmlDeviceGetMemoryInfo(handle).used for handle in self.gpus)
            self.gpu_peak = max(self.gpu_peak or 0, used)
        self.record(time.perf_counter() - self._start, time.time(), total, kinds)
        return total

    def record(self, seconds: float, epoch: float, total: int, kinds: dict[str, int]) -> None:
        """One sample: seconds since the start, epoch seconds, total bytes, bytes per kind of process."""
        n = len(self._totals)
        for kind in kinds.keys() - self._kinds.keys():  # a kind first seen now: absent before
            self._kinds[kind] = array("q", [ABSENT]) * n
        for kind, column in self._kinds.items():
            column.append(kinds.get(kind, ABSENT))
        self._seconds.append(seconds)
        self.clock.append(epoch)
        self._totals.append(total)

    @property
    def kind_samples(self) -> list[dict[str, int]]:
        """Each sample's bytes per kind of process (the kinds that ran then)."""
        return [{kind: column[i] for kind, column in self._kinds.items() if column[i] != ABSENT}
                for i in range(len(self._totals))]

    @property
    def by_kind(self) -> dict[str, int]:
        """Each kind of process's own peak (bytes)."""
        return {kind: max(column) for kind, column in self._kinds.items()}

    def halves(self) -> dict[str, int]:
        """Peak total in the first and in the second half of the run's time: memory that grows
        with the corpus peaks later; a flat run peaks about equally in both."""
        end = self._seconds[-1]
        return {half: max((rss for t, rss in zip(self._seconds, self._totals) if (t <= end / 2) == (half == "first half")), default=0)
                for half in ("first half", "second half")}

    def percentiles(self) -> dict[str, int]:
        """The total that the samples stay at or under 50 % and 95 % of the time: the level memory
        holds. The peak is a maximum over samples, so a longer run (more samples, more moments at
        which every actor is in a big batch at once) reads higher even when nothing grows."""
        return {f"p{q}": _percentile(list(self._totals), q) for q in (50, 95)}

    def processing_levels(self, started: float, seconds: float) -> dict[str, int]:
        """The 50th and 95th percentile of the samples taken while units were processed (no Ray
        start, no loading, no shutdown: their share of a run shrinks as the corpus grows and would
        lift a long run's percentiles), and the 50th of each quarter of that time: memory that grows
        with the corpus rises from quarter to quarter, bounded memory does not."""
        inside = self._while(self._totals, started, seconds)
        if not inside:
            return {}
        levels = {f"p{q}": _percentile([rss for _, rss in inside], q) for q in (50, 95)}
        return levels | _quarter_medians(inside, started, seconds)

    def kind_levels(self, started: float, seconds: float) -> dict[str, dict[str, int]]:
        """The 50th percentile of each kind of process in each quarter of the processing: which
        process a rise from quarter to quarter (or between corpus sizes) comes from."""
        return {kind: _quarter_medians(self._while(column, started, seconds), started, seconds)
                for kind, column in sorted(self._kinds.items())}

    def _while(self, values: array, started: float, seconds: float) -> list[tuple[float, int]]:
        """(epoch seconds, value) of the samples taken in [started, started + seconds] that have a value
        in `values` (the totals, or one kind's column: ABSENT where no process of that kind ran)."""
        return [(t, v) for t, v in zip(self.clock, values) if started <= t <= started + seconds and v != ABSENT]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> PeakRSS:
        self._start = time.perf_counter()
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def _quarter_medians(samples: list[tuple[float, int]], started: float, seconds: float) -> dict[str, int]:
    """{"p50 quarter N": median} of (epoch seconds, bytes) samples, by quarter of [started, started + seconds]."""
    levels = {}
    for quarter in range(4):
        part = [rss for t, rss in samples if min(3, int(4 * (t - started) / seconds)) == quarter]
        if part:
            levels[f"p50 quarter {quarter + 1}"] = _percentile(part, 50)
    return levels


def _percentile(values: list[int], q: int) -> int:
    """The value that q % of `values` are at or under (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * q // 100)]


def _nvml_devices() -> list:
    """NVML handles of the GPUs, or [] where there is no NVIDIA driver or no nvidia-ml-py."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no NVIDIA driver on this machine
        return []
    return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]


def count_words(docs) -> int:
    """Words as every run here counts them: spaCy's tokens that are not whitespace."""
    from spacy.attrs import IS_SPACE

    return sum(len(doc) - int(doc.to_array(IS_SPACE).sum()) for doc in docs if len(doc))


def bench_nlp_pipe(model: str, texts: list[str], batch_sizes: list[int], use_gpu: bool, n_process: int = 1) -> dict:
    from operators.pipeline import load_pipeline

    # spaCy as it comes: spacy-transformers' own forward (bulk=False), one padded call per sub-batch
    nlp = load_pipeline(model, use_gpu=use_gpu, max_wordpieces=256, bulk=False).nlp
    best: dict[str, Any] = {}
    for batch_size in batch_sizes:
        start = time.perf_counter()
        words = count_words(nlp.pipe(texts, batch_size=batch_size, n_process=n_process))
        seconds = time.perf_counter() - start
        if not best or words / seconds > best["words_per_s"]:
            best = {"batch_size": batch_size, "seconds": round(seconds, 2), "words": words, "words_per_s": round(words / seconds, 1)}
    return best


MULTIPROCESS = """
import json, sys, torch
torch.set_num_threads(1)  # no intra-op thread pool before nlp.pipe forks: forking one deadlocks
from jobs.bench import bench_nlp_pipe
texts = json.load(open(sys.argv[2]))
print(json.dumps(bench_nlp_pipe(sys.argv[1], texts, [int(sys.argv[3])], False, int(sys.argv[4]))))
"""


def bench_nlp_pipe_processes(model: str, texts: list[str], batch_size: int, n_process: int, workdir: Path) -> dict:
    """nlp.pipe(n_process=N) in a fresh interpreter, one torch thread per process (as Ray's actors)."""
    import subprocess
    import sys

    texts_file = workdir / "texts.json"
    texts_file.write_text(json.dumps(texts))
    result = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS, model, str(texts_file), str(batch_size), str(n_process)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_corpus(texts: list[str], folder: Path, layout: str) -> Path:
    """The corpus as users' files hold it: `polars` one file with polars' defaults (polars 2.1 cuts
    row groups of about 131k rows: one for up to ~131k rows, two for 200k),
    `row-groups-N` one file of N-row groups (pyarrow), `files-N` N files (as Spark writes a table)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(range(len(texts)))
    if layout == "polars":
        pl.DataFrame({"id": ids, "text": texts}).write_parquet(folder / "corpus.parquet")
    elif layout.startswith("row-groups-"):
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / "corpus.parquet", row_group_size=int(layout.rsplit("-", 1)[1]))
    elif layout.startswith("files-"):
        n = min(int(layout.rsplit("-", 1)[1]), len(texts))
        bounds = [len(texts) * i // n for i in range(n + 1)]  # as even as can be, none empty
        for i in range(n):
            a, b = bounds[i], bounds[i + 1]
            pl.DataFrame({"id": ids[a:b], "text": texts[a:b]}).write_parquet(folder / f"part-{i:05d}.parquet")
    else:
        raise typer.BadParameter(f"unknown --layout {layout!r}; the layouts are {LAYOUTS}")
    return folder


def bench_corpus_nlp(model: str, corpus: Path, workdir: Path, gpu: bool, batch_size: int, **options: Any) -> dict:
    """`jobs.annotate.run` on the Parquet `corpus`; `options` are RunConfig fields (None = its default)."""
    import ray

    from jobs.annotate import run

    if ray.is_initialized():  # Ray's start is part of what is measured: start from none
        ray.shutdown()
    # on a GPU with no --gpus-per-actor: as `annotate` plans it (several pipelines per GPU)
    options = ({} if gpu else {"gpus_per_actor": 0.0}) | {k: v for k, v in options.items() if v is not None}
    output = tempfile.mkdtemp(prefix="out-", dir=workdir)
    start, start_epoch = time.perf_counter(), time.time()
    # as `corpus-nlp annotate` runs: it starts Ray for the run and stops it before compacting and reporting
    report = run(RunConfig(input=str(corpus), output=output, model=model, batch_size=batch_size, **options),
                 console=Console(stderr=True, quiet=True))
    seconds = time.perf_counter() - start
    shutil.rmtree(output)  # a big run's sentence vectors alone take GBs
    return {"seconds": round(seconds, 2), "words": report.words,
            "documents": report.documents, "words_per_s": round(report.words / seconds, 1),
            # without Ray's start and pipeline loading: from the first unit taken up to the last one done
            "processing_seconds": round(report.processing_seconds, 2),
            "processing_started": report.processing_started,
            "processing_words_per_s": round(report.processing_words_per_second, 1),
            "actors": report.actors, "gpus_per_actor": report.gpus_per_actor, "errors": report.errors,
            "units": report.units.get("processed", 0), **report.input_files,
            **report.timings,
            "first_unit_started_seconds": round(report.processing_started - start_epoch, 2) if report.processing_started else None,
            "forward_seconds": round(report.forward_seconds, 2), "host_seconds": round(report.host_seconds, 2),
            "host_us_per_word": round(1e6 * report.host_seconds / max(1, report.words), 1),
            **{k: v for k, v in report.commits.items() if k.endswith("seconds")},
            "busy": busy_summary(report.busy, report.actors)}


def busy_summary(busy: list[dict], actors: int, buckets: int = 10) -> dict:
    """How busy the actors were: the share of actor-time spent in units from the first unit started to
    the last one done, that share in each tenth of that time, and how long actors waited at the end."""
    if not busy:
        return {}
    start = min(b["started"] for b in busy)
    end = max(b["started"] + b["seconds"] for b in busy)
    span = max(end - start, 1e-9)
    width = span / buckets
    shares = []
    for k in range(buckets):
        lo, hi = start + k * width, start + (k + 1) * width
        covered = sum(max(0.0, min(hi, b["started"] + b["seconds"]) - max(lo, b["started"])) for b in busy)
        shares.append(round(covered / (width * actors), 3))
    last_done = {}
    for b in busy:
        last_done[b["actor"]] = max(last_done.get(b["actor"], 0.0), b["started"] + b["seconds"])
    return {"share": round(sum(b["seconds"] for b in busy) / (span * actors), 3), "share_by_tenth": shares,
            "tail_idle_seconds": round(sum(end - t for t in last_done.values()) / max(1, len(last_done)), 2)}


def bench_transformer_limit(model: str, texts: list[str], gpu: bool, batch_size: int = 256, window: int = 128) -> dict | None:
    """The pipeline's own transformer, alone: bf16 autocast over length-sorted 128-piece windows."""
    import torch

    from operators.pipeline import load_pipeline

    pipeline = load_pipeline(model, use_gpu=gpu, max_wordpieces=256, bulk=False)  # windows sorted here
    if pipeline.embedding != "transformer":
        return None
    trf = pipeline.nlp.get_pipe(pipeline.embedding_component).model
    hf_model, tokenizer = trf.transformer, trf.tokenizer
    device = torch.device("cuda" if gpu else "cpu")
    hf_model.to(device).eval()
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    body = window - 2
    windows = [[tokenizer.cls_token_id, *seq[i : i + body], tokenizer.sep_token_id] for seq in ids for i in range(0, len(seq), body)]
    windows.sort(key=len)
    words = count_words(pipeline.nlp.tokenizer.pipe(texts))  # as the other runs count: non-space tokens
    batches = []  # built on the device before the clock starts: only the forward passes are timed
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        width = len(chunk[-1])
        input_ids = torch.tensor([w + [0] * (width - len(w)) for w in chunk], device=device)
        mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in chunk], device=device)
        batches.append((input_ids, mask))
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        hf_model(input_ids=batches[-1][0], attention_mask=batches[-1][1])  # warm-up (kernel selection)
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for input_ids, mask in batches:
            hf_model(input_ids=input_ids, attention_mask=mask)
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "windows": len(windows), "words": words, "words_per_s": round(words / seconds, 1)}


def _machine(device: str) -> str:
    cores = f"{psutil.cpu_count()} cores"
    if device == "gpu":
        import torch

        return f"{torch.cuda.get_device_name(0)}, {cores}"
    return f"cpu, {cores}"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, r in results["runs"].items():
        if r:
            rows.append((name, r["words_per_s"]))
            if r.get("processing_words_per_s"):
                rows.append((f"{name} after load", r["processing_words_per_s"]))
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.barh([n for n, _ in rows][::-1], [v for _, v in rows][::-1], color="#2b6cb0")
    for i, (_, v) in enumerate(rows[::-1]):
        ax.text(v, i, f" {v:,.0f}", va="center")
    ax.set_xlabel("words/s")
    ax.set_title(f"{results['model']} on {results['machine']} ({results['words']:,} words)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def command(
    model: Annotated[str, typer.Option(help="Pipeline to measure (ignored with --shape)")] = DEFAULT_MODEL,
    shape: Annotated[str | None, typer.Option(help="Build a pipeline instead: a random-weight transformer (bert-base, minilm, tiny) with heads, or tok2vec-tiny (near-free: what corpus-nlp itself costs)")] = None,
    parser: Annotated[bool, typer.Option(help="Include a parser in a transformer --shape pipeline")] = True,
    words: Annotated[int, typer.Option(help="Corpus size in words (EWT repeated)")] = 50_000,
    documents: Annotated[int | None, typer.Option(help="Corpus size in documents instead (EWT repeated)")] = None,
    texts_kind: Annotated[str, typer.Option("--texts", help="documents (EWT's documents) or sentences (each EWT sentence a document)")] = "documents",
    distinct: Annotated[bool, typer.Option(help="Make every text distinct (a number appended), as in a real corpus: repeated texts are dictionary-encoded, so their files look smaller than they are")] = False,
    layout: Annotated[str, typer.Option(help=f"How the corpus is written, a comma list runs corpus-nlp on each: {LAYOUTS}")] = "polars",
    input: Annotated[str | None, typer.Option(help="Annotate this INPUT as it is instead of writing a corpus (no baselines)")] = None,
    baseline_words: Annotated[int | None, typer.Option(help="Run the nlp.pipe baselines on the first N words of the same corpus only (a slow baseline on a corpus sized for a fast cluster); default: all of it")] = None,
    device: Annotated[str, typer.Option(help="cpu or gpu")] = "cpu",
    batch_sizes: Annotated[str, typer.Option(help="nlp.pipe batch sizes to try for the baseline")] = "16,64,256",
    docs: Annotated[str, typer.Option(help="EWT docs.jsonl (falls back to the bundled sample)")] = DEFAULT_DOCS,
    out: Annotated[str, typer.Option(help="Folder for bench.json and bench.png")] = "out/bench",
    baselines: Annotated[bool, typer.Option(help="Also run nlp.pipe and the raw transformer (--no-baselines: corpus-nlp only)")] = True,
    actors: Annotated[int | None, typer.Option(help="corpus-nlp actors (default: as `annotate` plans them)")] = None,
    unit_mb: Annotated[str | None, typer.Option(help="corpus-nlp text per unit at most, MB, a comma list runs each (default: as `annotate`)")] = None,
    gpus_per_actor: Annotated[str | None, typer.Option(help="corpus-nlp GPU share per actor, e.g. 0.25 for four actors per GPU, auto as `annotate` plans it; a comma list runs each (default: auto)")] = None,
    precision: Annotated[str, typer.Option(help="Transformer forward in corpus-nlp: fp32 or bf16, or a comma list to run each (nlp.pipe stays fp32)")] = "fp32",
    token_budget: Annotated[int | None, typer.Option(help="corpus-nlp padded wordpieces per transformer call (default: as `annotate`)")] = None,
    exclude: Annotated[str | None, typer.Option(help="corpus-nlp: pipeline components not to load, comma-separated; a ';' list runs each (e.g. ';parser;parser,lemmatizer')")] = None,
    batch_chars: Annotated[int | None, typer.Option(help="corpus-nlp characters per nlp.pipe batch (default: as `annotate`)")] = None,
) -> None:
    """Measure nlp.pipe, corpus-nlp end to end and the raw transformer in one run."""
    gpu = device == "gpu"
    sizes = [int(b) for b in batch_sizes.split(",")]
    console = Console(width=160)
    baselines = baselines and input is None
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if shape == "tok2vec-tiny":
            name = build_tok2vec_tiny(workdir / "tok2vec_tiny")
        else:
            name = build_shaped_pipeline(workdir / "shaped", shape, parser) if shape else model
        load = load_sentences if texts_kind == "sentences" else load_texts
        texts = load(docs, words if documents is None else 10**12, documents) if input is None else []
        if distinct:
            texts = [f"{text} #{i}" for i, text in enumerate(texts)]
        baseline_texts = load(docs, baseline_words) if baseline_words else texts  # the same texts' start
        runs: dict[str, Any] = {}
        rss: dict[str, int] = {}
        if baselines:
            with PeakRSS() as peak:
                runs["nlp.pipe"] = bench_nlp_pipe(name, baseline_texts, sizes, gpu)
            rss["nlp.pipe"] = peak.peak
        if baselines and not gpu:
            with PeakRSS() as peak:
                runs["nlp.pipe n_process=2"] = bench_nlp_pipe_processes(name, baseline_texts, max(sizes), 2, workdir)
            rss["nlp.pipe n_process=2"] = peak.peak
        # annotate's driver never holds the corpus's text: neither does this one while corpus-nlp runs
        layouts = [("input", Path(input))] if input else [(lay, write_corpus(texts, workdir / lay, lay)) for lay in layout.split(",")]
        del texts, baseline_texts
        release_free_memory()
        unit_sizes = [float(u) for u in unit_mb.split(",")] if unit_mb else [None]
        excludes = exclude.split(";") if exclude is not None else [None]
        configs = [(lay, path, p, None if g in (None, "auto") else float(g), u, x) for lay, path in layouts for p in precision.split(",")
                   for g in (gpus_per_actor.split(",") if gpus_per_actor else [None]) for u in unit_sizes for x in excludes]
        e2e_names = []
        for lay, path, p, g, u, x in configs:
            parts = ([lay] if len(layouts) > 1 else []) + ([p] if len(precision.split(",")) > 1 else []) + (
                [("planned" if g is None else f"{g:g} GPU/actor")] if gpus_per_actor and len(gpus_per_actor.split(",")) > 1 else []) + (
                [f"{u:g} MB units"] if len(unit_sizes) > 1 else []) + ([f"without {x or 'nothing'}"] if len(excludes) > 1 else [])
            run_name = "corpus-nlp" + (f" {', '.join(parts)}" if parts else "")
            e2e_names.append(run_name)
            with PeakRSS() as peak:
                runs[run_name] = bench_corpus_nlp(
                    name, path, workdir, gpu, max(sizes) if gpu else 64,
                    unit_mb=u, actors=actors, gpus_per_actor=g, precision=p, token_budget=token_budget, exclude=x,
                    batch_chars=batch_chars,
                )
            runs[run_name].update(precision=p, layout=lay, unit_mb=u, exclude=x)
            processing = runs[run_name].pop("processing_started"), runs[run_name]["processing_seconds"]
            rss_processing = {q: round(v / 2**20) for q, v in peak.processing_levels(*processing).items()}
            rss_kind_processing = {kind: {q: round(v / 2**20) for q, v in levels.items()}
                                   for kind, levels in peak.kind_levels(*processing).items()}
            runs[run_name]["peak_gpu_mib"] = round(peak.gpu_peak / 2**20) if peak.gpu_peak else None
            runs[run_name]["driver_peak_rss_mib"] = round(peak.by_kind.get("driver", 0) / 2**20)
            rss[run_name] = peak.peak
        # memory by process and by half: of the last corpus-nlp run
        rss_by_kind = {kind: round(v / 2**20) for kind, v in sorted(peak.by_kind.items())}
        rss_halves = {half: round(v / 2**20) for half, v in peak.halves().items()}
        rss_levels = {q: round(v / 2**20) for q, v in peak.percentiles().items()}
        texts = pl.scan_parquet(str(layouts[0][1])).select("text").collect()["text"].to_list() if baselines else []
        runs["transformer bf16"] = bench_transformer_limit(name, texts, gpu) if baselines else None
    gpu_peak = None
    if gpu:
        import torch

        gpu_peak = torch.cuda.max_memory_allocated()  # this process: nlp.pipe and the raw transformer
    ratios = {}
    for run_name in e2e_names:
        suffix = "" if run_name == "corpus-nlp" else f" ({run_name.removeprefix('corpus-nlp ')})"
        for key in ("words_per_s", "processing_words_per_s"):
            e2e = runs[run_name][key]
            label = "corpus-nlp" if key == "words_per_s" else "corpus-nlp after load"
            if "nlp.pipe" in runs:
                ratios[f"{label} / nlp.pipe{suffix}"] = round(e2e / runs["nlp.pipe"]["words_per_s"], 3)
            if "nlp.pipe n_process=2" in runs:
                ratios[f"{label} / nlp.pipe n_process=2{suffix}"] = round(e2e / runs["nlp.pipe n_process=2"]["words_per_s"], 3)
            if runs["transformer bf16"]:
                ratios[f"{label} / transformer bf16{suffix}"] = round(e2e / runs["transformer bf16"]["words_per_s"], 3)
    if len(e2e_names) > 1:  # wall time of each run against the first one's
        for run_name in e2e_names[1:]:
            ratios[f"{run_name} seconds / {e2e_names[0]} seconds"] = round(runs[run_name]["seconds"] / runs[e2e_names[0]]["seconds"], 3)
    results = {
        "model": shape or model, "machine": _machine(device), "words": runs[e2e_names[0]]["words"],
        "options": {"precision": precision, "token_budget": token_budget, "batch_chars": batch_chars, "gpus_per_actor": gpus_per_actor, "actors": actors,
                    "unit_mb": unit_mb, "layout": "input" if input else layout, "texts": texts_kind, "documents": documents,
                    "exclude": exclude, "distinct": distinct,
                    **({"baseline_words": baseline_words} if baseline_words else {})},
        "runs": runs, "ratios": ratios, "peak_rss_mib": {k: round(v / 2**20) for k, v in rss.items()},
        "corpus_nlp_peak_rss_mib_by_process": rss_by_kind,
        "corpus_nlp_peak_rss_mib_by_half": rss_halves,
        "corpus_nlp_rss_mib_percentiles": rss_levels,
        "corpus_nlp_rss_mib_while_processing": rss_processing,
        "corpus_nlp_rss_mib_while_processing_by_process": rss_kind_processing,
        "peak_gpu_mib": round(gpu_peak / 2**20) if gpu_peak else None,
    }
    table = Table(title=f"{results['model']} on {results['machine']}, {results['words']:,} words")
    for column in ("run", "words/s", "after load", "seconds", "actors", "units", "busy", "peak RSS MiB", "peak GPU MiB"):
        table.add_column(column)
    for run_name, r in runs.items():
        if r:
            table.add_row(run_name, f"{r['words_per_s']:,.0f}", f"{r['processing_words_per_s']:,.0f}" if "processing_words_per_s" in r else "",
                          str(r["seconds"]), str(r.get("actors", "")), str(r.get("units", "")),
                          f"{r['busy']['share']:.2f}" if r.get("busy") else "",
                          str(results["peak_rss_mib"].get(run_name, "")), str(r.get("peak_gpu_mib") or ""))
    console.print(table)
    for label, value in ratios.items():
        console.print(f"{label}: {value:.3f}")
    for run_name in e2e_names:
        r = runs[run_name]
        console.print(
            f"{run_name}: {r.get('files', 0)} input file(s), {r.get('row_groups_read', 0)} row group(s) read once by "
            f"{r.get('read_tasks', 0)} read task(s); footers {r.get('footers_seconds', 0)} s, planning {r.get('plan_seconds', 0)} s; "
            f"commits {r.get('commit_seconds', 0)} s, compaction {r.get('compact_seconds', 0)} s, vacuum {r.get('vacuum_seconds', 0)} s; "
            f"driver peak RSS {r['driver_peak_rss_mib']:,} MiB; pipeline host time {r.get('host_us_per_word', 0)} µs a word "
            f"(outside the transformer's forward: {r.get('host_seconds', 0)} s, forward {r.get('forward_seconds', 0)} s); "
            "actors busy by tenth of the processing: "
            + " ".join(f"{v:.2f}" for v in (r.get("busy") or {}).get("share_by_tenth", []))
            + f"; mean idle at the end {(r.get('busy') or {}).get('tail_idle_seconds', 0)} s"
        )
    console.print("corpus-nlp: Ray's start and pipeline loading are included in words/s, not in 'after load' "
                  f"(Ray start {runs[e2e_names[0]]['ray_start_seconds']} s); peak GPU memory of this process "
                  f"(nlp.pipe, raw transformer): {results['peak_gpu_mib']} MiB; of all processes: 'peak GPU MiB'")
    console.print("corpus-nlp peak RSS by process, MiB (each kind's own peak): "
                  + ", ".join(f"{kind} {mib:,}" for kind, mib in rss_by_kind.items()))
    console.print("corpus-nlp peak RSS by half of the run, MiB: " + ", ".join(f"{h} {mib:,}" for h, mib in rss_halves.items()))
    console.print("corpus-nlp RSS sampled every 0.2 s, MiB: " + ", ".join(f"{q} {mib:,}" for q, mib in rss_levels.items()))
    console.print("corpus-nlp RSS while units were processed, MiB: " + ", ".join(f"{q} {mib:,}" for q, mib in rss_processing.items()))
    console.print("corpus-nlp RSS while units were processed by process, p50 of each quarter, MiB: " + "; ".join(
        f"{kind} " + " / ".join(f"{mib:,}" for mib in levels.values()) for kind, levels in rss_kind_processing.items()))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, folder / "bench.png")
    console.print(f"wrote {folder / 'bench.json'} and {folder / 'bench.png'}")

"""(PERFLOG #44; python bench/results/cpu-corpus_nlp_minilm-probe/unit_annotator_probe.py 2000000 2, OMP_NUM_THREADS=1)
One UnitAnnotator in process (no Ray), 1 torch thread as a Ray actor with <1 CPU has, over the
units of the bench's corpus for --words; RSS sampled every 0.2 s by a thread; quarter medians.
PERFLOG #45 ran it with `2000000 4` (590,189 words), in pairs side by side: glibc's defaults vs
MALLOC_MMAP_THRESHOLD_=4194304 (a), and the release after the batch only vs after every component (b,
TRIM_EACH_COMPONENT=1: a patch of spaCy's _pipe; b3ad687 built it into the operator, reverted in
98d1686, see #46). PERFLOG #47 ran it with `2000000 4` at 9d3f088 (before the operator switched
oneDNN off itself), in pairs side by side, with these switches: PIPE_THREAD=1 (every unit in one
worker thread, as Ray Data runs an actor's calls), KEEP_STRINGS=0 (a memory zone every batch),
ONEDNN_PRIMITIVE_CACHE_CAPACITY=N (oneDNN's own variable), NO_MKLDNN=1 (torch without oneDNN), and
MALLOC_STATS=1 (glibc's malloc_stats, per arena, to stderr every 25 units)."""
import json, sys, threading, time, statistics as st
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import torch; torch.set_num_threads(1)
import os
if os.environ.get("NO_MKLDNN"): torch.backends.mkldnn.enabled = False  # no oneDNN kernels (the GELU) at all
from pathlib import Path
from jobs.bench import load_texts, write_corpus, DEFAULT_DOCS
from operators.annotate import UnitAnnotator
from operators.config import AnnotateConfig
from operators.inputs import discover
from operators.units import plan_units
from operators.writer import prepare_output
import pyarrow as pa, ctypes, gc
class MI2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = MI2
def mi():
    m = libc.mallinfo2(); M = 2**20
    return {"heap": round(m.arena / M), "in_use": round(m.uordblks / M), "free": round(m.fordblks / M), "mmapped": round(m.hblkhd / M), "arrow": round(pa.total_allocated_bytes() / M), "objects": len(gc.get_objects())}
words, every = int(sys.argv[1]), int(sys.argv[2])  # every: take every Nth unit (an actor sees half)
import tempfile
d = Path(tempfile.mkdtemp(prefix="unit-probe-")); corpus = write_corpus(load_texts(str(ROOT.parent / "shared/data/ewt/docs.jsonl"), words), d / "corpus.parquet", 16)
cfg = AnnotateConfig(input=str(corpus), output=str(d / "out"), model="corpus_nlp_minilm", batch_size=64, unit_rows=16,
                     **({"keep_strings": int(os.environ["KEEP_STRINGS"])} if os.environ.get("KEEP_STRINGS") else {}))
units = plan_units(discover(cfg.input), "text", "id", "x", 16).units[::every]
prepare_output(cfg.output)
ua = UnitAnnotator(cfg)
import os
if os.environ.get("TRIM_EACH_COMPONENT"):
    from operators.annotate import release_free_memory
    import spacy.language as _sl
    _orig = _sl._pipe
    def _each(docs, *a, **kw):
        out = list(_orig(docs, *a, **kw)); release_free_memory(); yield from out
    _sl._pipe = _each
    print(json.dumps({"note": "glibc free pages released after every pipeline component (patched spaCy _pipe)"}), flush=True)
call = ua
if os.environ.get("PIPE_THREAD"):  # every unit runs in one long-lived worker thread (its own glibc arena)
    from concurrent.futures import ThreadPoolExecutor
    _pool = ThreadPoolExecutor(1)
    call = lambda table: _pool.submit(ua, table).result()
    print(json.dumps({"note": "units run in one worker thread"}), flush=True)
samples = []; stop = False
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
def sampler():
    while not stop:
        samples.append((time.time(), rss())); time.sleep(0.2)
t0 = time.time(); th = threading.Thread(target=sampler, daemon=True); th.start()
n_words = 0
for k, u in enumerate(units):
    row = call(pa.Table.from_pylist([u.to_row()])).to_pylist()[0]
    n_words += row.get("words", 0) or 0
    if k % 25 == 0 and os.environ.get("MALLOC_STATS"):
        print(f"--- unit {k}", file=sys.stderr, flush=True); libc.malloc_stats()  # per arena, to stderr
    if k % 25 == 0: print(json.dumps({"unit": k, "s": round(time.time() - t0), "rss": rss(), **mi(), "vocab": len(ua.annotator.pipeline.nlp.vocab.strings)}), flush=True)
stop = True; t1 = time.time()
q = [[v for t, v in samples if min(3, int(4 * (t - t0) / (t1 - t0))) == i] for i in range(4)]
print(json.dumps({"units": len(units), "words": n_words, "seconds": round(t1 - t0), "p50": st.median(v for _, v in samples), "quarters": [st.median(x) for x in q]}))

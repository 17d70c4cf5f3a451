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
MALLOC_STATS=1 (glibc's malloc_stats, per arena, to stderr every 25 units). PERFLOG #50 added
KINDS=N: every N seconds, during the batches, the resident MiB of /proc/self/smaps by kind (glibc's
main heap, its thread-arena heaps, other anonymous mappings, files) beside what the allocators say
they hold: glibc's heaps and its directly mapped blocks (mallinfo2, all arenas) and pymalloc's
arenas (sys._debugmallocstats); one {"kinds": ...} line each, and their quarter medians last. With
LD_PRELOAD=mmap_tracer.so and MMAP_TRACE=PREFIX (../cpu-corpus_nlp_minilm-anon-origin/), also the
resident MiB of the other anonymous mappings by the shared object that mapped them (mincore).
ARROW_RELEASE=1: after every unit, also pyarrow's default pool gives back what it holds free
(`release_unused`)."""
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
if os.environ.get("ARROW_RELEASE"):
    import operators.annotate as _oa
    _trim = _oa.release_free_memory
    def _both(): _trim(); pa.default_memory_pool().release_unused()
    _oa.release_free_memory = _both
    print(json.dumps({"note": "pyarrow's pool releases unused memory after every unit"}), flush=True)
if os.environ.get("PIPE_THREAD"):  # every unit runs in one long-lived worker thread (its own glibc arena)
    from concurrent.futures import ThreadPoolExecutor
    _pool = ThreadPoolExecutor(1)
    call = lambda table: _pool.submit(ua, table).result()
    print(json.dumps({"note": "units run in one worker thread"}), flush=True)
samples = []; stop = False; kinds = []
def pymalloc():
    """pymalloc's current arenas and the bytes in their blocks, from sys._debugmallocstats (C stderr)."""
    import tempfile as _t
    with _t.TemporaryFile() as f:
        saved = os.dup(2); os.dup2(f.fileno(), 2)
        try: sys._debugmallocstats()
        finally: os.dup2(saved, 2); os.close(saved)
        f.seek(0); text = f.read().decode()
    val = lambda key: next((int(l.split("=")[1].replace(",", "")) for l in text.splitlines() if l.startswith(key)), 0)
    return {"py_arenas": val("# arenas allocated current"), "py_blocks": round(val("# bytes in allocated blocks") / 2**20)}
def smaps_kinds():
    agg = {"heap": 0, "arena_heaps": 0, "anon_other": 0, "stack": 0, "files": 0}; cur = None
    for line in open("/proc/self/smaps"):
        p = line.split()
        if "-" in p[0] and not p[0].endswith(":"):
            start, end = (int(x, 16) for x in p[0].split("-")); name = p[5] if len(p) >= 6 else ""
            if name == "[heap]": cur = "heap"
            elif name == "[stack]": cur = "stack"
            elif name.startswith("/"): cur = "files"
            elif name == "" and "rw" in p[1] and start % (64 << 20) == 0 and end - start <= (64 << 20): cur = "arena_heaps"
            else: cur = "anon_other"
        elif p[0] == "Rss:": agg[cur] += int(p[1])
    return {k: v // 1024 for k, v in agg.items()}
live = {}  # start -> (end, caller object): anonymous mappings made through mmap's PLT (mmap_tracer.so)
trace = open(f"{os.environ['MMAP_TRACE']}.{os.getpid()}") if os.environ.get("MMAP_TRACE") else None
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
def unmap(a, b):
    for s0, (e0, who) in [(s0, v) for s0, v in live.items() if s0 < b and v[0] > a]:
        del live[s0]
        if s0 < a: live[s0] = (a, who)
        if e0 > b: live[b] = (e0, who)
def by_origin():
    """Resident MiB of the traced live mappings, by the object that mapped them."""
    for line in trace.readlines():
        kind, addr, n, *who = line.split()
        a, b = int(addr, 16), int(addr, 16) + int(n)
        unmap(a, b)
        if kind == "M": live[a] = (b, who[0] if who else "?")
    out = {}
    for s0, (e0, who) in list(live.items()):
        pages = (e0 - s0 + 4095) // 4096; vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(s0, e0 - s0, vec) == 0:
            v = bytes(vec); out[who] = out.get(who, 0) + (pages - v.count(0)) * 4096
    return {k: round(v / 2**20, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}
def kinds_sampler(every):
    while not stop:
        m = libc.mallinfo2(); M = 2**20
        row = {"t": round(time.time() - t0, 1), "rss": rss(), **smaps_kinds(), "glibc_heaps": round(m.arena / M), "glibc_in_use": round(m.uordblks / M), "glibc_mmapped": round(m.hblkhd / M), **pymalloc()}
        if trace: row["by_origin"] = by_origin()
        kinds.append(row); print(json.dumps({"kinds": row}), flush=True); time.sleep(every)
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
def sampler():
    while not stop:
        samples.append((time.time(), rss())); time.sleep(0.2)
t0 = time.time(); th = threading.Thread(target=sampler, daemon=True); th.start()
if os.environ.get("KINDS"): threading.Thread(target=kinds_sampler, args=(float(os.environ["KINDS"]),), daemon=True).start()
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
if kinds:  # each kind's median over each quarter of the run's time
    qk = [[r for r in kinds if min(3, int(4 * r["t"] / (t1 - t0))) == i] for i in range(4)]
    print(json.dumps({"kinds_quarters": {k: [st.median(r[k] for r in x) for x in qk] for k in kinds[0] if k not in ("t", "by_origin")}}))
    if trace:
        who = sorted({w for r in kinds for w in r["by_origin"]})
        print(json.dumps({"by_origin_quarters": {w: [st.median(r["by_origin"].get(w, 0) for r in x) for x in qk] for w in who}}))

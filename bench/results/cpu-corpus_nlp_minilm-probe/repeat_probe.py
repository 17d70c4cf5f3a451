"""(PERFLOG #45; OMP_NUM_THREADS=1 python bench/results/cpu-corpus_nlp_minilm-probe/repeat_probe.py 30 5)
The same units over and over in one UnitAnnotator (1 torch thread): does a unit's peak RSS rise pass after pass?"""
import json, sys, threading, time, statistics as st, ctypes
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]; sys.path.insert(0, str(ROOT))
import torch; torch.set_num_threads(1)
from jobs.bench import load_texts, write_corpus
from operators.annotate import UnitAnnotator
from operators.config import AnnotateConfig
from operators.inputs import discover
from operators.units import plan_units
from operators.writer import prepare_output
import pyarrow as pa, tempfile
class MI2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = MI2
n_units, passes = int(sys.argv[1]), int(sys.argv[2])
d = Path(tempfile.mkdtemp(prefix="rep-probe-")); corpus = write_corpus(load_texts(str(ROOT.parent / "shared/data/ewt/docs.jsonl"), 300000), d / "corpus.parquet", 16)
units = plan_units(discover(str(corpus)), "text", "id", "x", 16).units[:n_units]
ua = None
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
cur = [0]; stop = False
def sampler():
    while not stop:
        cur[0] = max(cur[0], rss()); time.sleep(0.05)
for p in range(passes):
    cfg = AnnotateConfig(input=str(corpus), output=str(d / f"out{p}"), model="corpus_nlp_minilm", batch_size=64, unit_rows=16)
    prepare_output(cfg.output)
    if ua is None:
        ua = UnitAnnotator(cfg); threading.Thread(target=sampler, daemon=True).start()
    else:
        ua.config = cfg
    peaks, t0 = [], time.time()
    for u in units:
        cur[0] = rss()
        ua(pa.Table.from_pylist([u.to_row()]))
        peaks.append(cur[0])
    m = libc.mallinfo2()
    print(json.dumps({"pass": p, "s": round(time.time() - t0, 1), "after": rss(), "peak_med": st.median(peaks), "peak_max": max(peaks), "peaks": peaks, "heap": m.arena >> 20, "in_use": m.uordblks >> 20}), flush=True)

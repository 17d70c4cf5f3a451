"""Every 20 s, for each pipeline actor (a Ray process whose title names UnitAnnotator/MapWorker):
resident MiB of its [heap] (glibc's main arena), of anonymous read-write mappings of at most 64 MiB
that start on a 64 MiB boundary (glibc's thread-arena heaps), of other anonymous mappings (large
blocks glibc mmaps directly, torch/numpy buffers, Ray's own), and of file mappings; plus the whole
process's Rss and Private_Dirty. One JSON line per sample: python arena_sampler.py OUT.jsonl"""
import json, os, sys, time
out = open(sys.argv[1], "w")
def title(pid):
    try: return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")[:100]
    except OSError: return None
def regions(pid):
    agg = {"heap": 0, "arena_heaps": 0, "arena_count": 0, "anon_other": 0, "files": 0, "shm": 0, "Rss": 0, "Private_Dirty": 0}
    cur = None
    try:
        for line in open(f"/proc/{pid}/smaps"):
            p = line.split()
            if not p: continue
            if "-" in p[0] and not p[0].endswith(":"):
                start, end = (int(x, 16) for x in p[0].split("-"))
                name = p[5] if len(p) >= 6 else ""
                if name == "[heap]": cur = "heap"
                elif name.startswith("/dev/shm") or "plasma" in name: cur = "shm"
                elif name.startswith("/") : cur = "files"
                elif name == "" and "rw" in p[1] and start % (64 << 20) == 0 and end - start <= (64 << 20):
                    cur = "arena_heaps"; agg["arena_count"] += 1
                else: cur = "anon_other"
            elif p[0] == "Rss:":
                agg[cur] += int(p[1]); agg["Rss"] += int(p[1])
            elif p[0] == "Private_Dirty:":
                agg["Private_Dirty"] += int(p[1])
    except OSError: return None
    return {k: (v if k == "arena_count" else v // 1024) for k, v in agg.items()}
t0 = time.time()
while True:
    rows = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        t = title(pid)
        if not t or not ("UnitAnnotator" in t or "MapWorker" in t): continue
        r = regions(pid)
        if r: rows.append({"pid": int(pid), **r})
    out.write(json.dumps({"t": round(time.time() - t0), "actors": rows}) + "\n"); out.flush()
    time.sleep(20)

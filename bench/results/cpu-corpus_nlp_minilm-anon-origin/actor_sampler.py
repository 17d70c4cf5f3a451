"""(PERFLOG #50) Every 20 s, for each pipeline actor (a Ray process whose title names
UnitAnnotator/MapWorker), resident MiB by kind from /proc/PID/smaps: glibc's main heap, its
thread-arena heaps (anonymous rw mappings of at most 64 MiB on a 64 MiB boundary), Arrow's mimalloc
arenas (anonymous mappings of 1 GiB or more: mimalloc reserves 1 GiB at a time), other anonymous
mappings (pymalloc's arenas, blocks glibc maps directly, Ray's), files. One JSON line per sample:
python actor_sampler.py OUT.jsonl"""
import json, os, sys, time
out = open(sys.argv[1], "w")
def title(pid):
    try: return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")[:100]
    except OSError: return None
def kinds(pid):
    agg = dict.fromkeys(("heap", "arena_heaps", "mimalloc", "anon_other", "files", "Rss"), 0); cur = None
    try:
        for line in open(f"/proc/{pid}/smaps"):
            p = line.split()
            if "-" in p[0] and not p[0].endswith(":"):
                start, end = (int(x, 16) for x in p[0].split("-")); name = p[5] if len(p) >= 6 else ""
                if name == "[heap]": cur = "heap"
                elif name.startswith("/"): cur = "files"
                elif name == "" and end - start >= (1 << 30): cur = "mimalloc"
                elif name == "" and "rw" in p[1] and start % (64 << 20) == 0 and end - start <= (64 << 20): cur = "arena_heaps"
                else: cur = "anon_other"
            elif p[0] == "Rss:": agg[cur] += int(p[1]); agg["Rss"] += int(p[1])
    except OSError: return None
    return {k: v // 1024 for k, v in agg.items()}
t0 = time.time()
while True:
    rows = [{"pid": int(p), **k} for p in os.listdir("/proc") if p.isdigit()
            and any(s in (title(p) or "") for s in ("UnitAnnotator", "MapWorker")) and (k := kinds(p))]
    out.write(json.dumps({"t": round(time.time() - t0), "actors": rows}) + "\n"); out.flush()
    time.sleep(20)

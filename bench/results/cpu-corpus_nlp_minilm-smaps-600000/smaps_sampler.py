import os, sys, time, json
out = open(sys.argv[1], "w")
def title(pid):
    try: return open(f"/proc/{pid}/cmdline","rb").read().replace(b"\0",b" ").decode(errors="replace")[:80]
    except OSError: return None
def rollup(pid):
    d = {}
    try:
        for l in open(f"/proc/{pid}/smaps_rollup"):
            p = l.split()
            if len(p) >= 3 and p[-1] == "kB": d[p[0].rstrip(":")] = int(p[1]) // 1024
    except OSError: return None
    return d
def files(pid):  # RSS per mapped file for mappings > 5 MiB resident
    agg = {}; name = None
    try:
        for l in open(f"/proc/{pid}/smaps"):
            p = l.split()
            if not p: continue
            if "-" in p[0] and len(p) >= 5 and not p[0].endswith(":"):
                name = p[5] if len(p) >= 6 else "[anon]"
            elif p[0] == "Rss:": agg[name] = agg.get(name, 0) + int(p[1])
    except OSError: return None
    return {k: v // 1024 for k, v in sorted(agg.items(), key=lambda kv: -kv[1])[:8]}
t0 = time.time()
while True:
    rows = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        t = title(pid)
        if not t or not ("ray::" in t or "raylet" in t or "gcs_server" in t or "corpus-nlp" in t or "default_worker" in t): continue
        r = rollup(pid)
        if r is None: continue
        row = {"pid": int(pid), "title": t, **{k: r.get(k) for k in ("Rss","Pss","Shared_Clean","Shared_Dirty","Private_Clean","Private_Dirty","Anonymous")}}
        if "MapWorker" in t or "UnitAnnotator" in t or "Actor" in t: row["files"] = files(pid)
        rows.append(row)
    out.write(json.dumps({"t": round(time.time()-t0), "procs": rows}) + "\n"); out.flush()
    time.sleep(10)

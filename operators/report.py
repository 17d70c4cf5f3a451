"""A run report people open instead of reading logs: one PNG and a self-contained HTML page.

    OUTPUT/_reports/<run id>.json   the numbers (written by the job)
    OUTPUT/_reports/<run id>.png    throughput over time, documents per status, top entity labels,
                                    units on each actor over time
    OUTPUT/_reports/<run id>.html   the same figure inline, with the run's numbers and problems
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

import polars as pl
from deltalake.exceptions import DeltaError

from . import query
from .storage import Storage


def _read(what: str, frame: Callable[[], pl.DataFrame], problems: list[str]) -> pl.DataFrame | None:
    """`frame()`, or None: nothing written yet (no problem), or a read error (listed as a problem,
    never shown as zeros)."""
    try:
        return frame()
    except query.NO_OUTPUT:
        return None
    except BaseException as exc:  # a corrupt file can make polars' Rust side panic: pyo3's PanicException is a BaseException
        if not isinstance(exc, (OSError, pl.exceptions.PolarsError, DeltaError)) and type(exc).__name__ != "PanicException":
            raise
        problems.append(f"could not read {what} from the output: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return None


def _status_counts(output: str, problems: list[str]) -> dict[str, int]:
    frame = _read("documents per status", lambda: query.scan(output, "documents").group_by("status").len().collect(), problems)
    return {} if frame is None else dict(zip(frame["status"].to_list(), frame["len"].to_list()))


def _top_labels(output: str, problems: list[str], n: int = 10) -> list[tuple[str, int]]:
    frame = _read("entity labels", lambda: query.label_distribution(output).head(n).collect(), problems)
    return [] if frame is None else list(zip(frame["label"].to_list(), frame["count"].to_list()))


def render_png(report: dict[str, Any], statuses: dict[str, int], labels: list[tuple[str, int]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4), dpi=100)
    timeline = report.get("timeline") or []
    ax = axes[0]
    t = [0.0] + [p["t"] for p in timeline]
    ax.plot(t, [0] + [p["words"] for p in timeline], marker="o", color="#2b6cb0", label="words")
    ax.plot(t, [0] + [p["errors"] for p in timeline], marker=".", color="#c53030", label="document errors")
    ax.legend(loc="upper left")
    ax.set_title(f"words annotated over time ({report.get('words_per_second', 0):,.0f} words/s)")
    ax.set_xlabel("seconds since start")
    ax = axes[1]
    names = sorted(statuses) or ["ok"]
    ax.bar(names, [statuses.get(n, 0) for n in names], color=["#2f855a" if n == "ok" else "#c53030" for n in names])
    ax.set_title("documents per status")
    ax = axes[2]
    if labels:
        ax.barh([l for l, _ in labels][::-1], [c for _, c in labels][::-1], color="#6b46c1")
    ax.set_title("top entity labels")
    ax = axes[3]
    busy = report.get("busy") or []
    if busy:
        origin = min(b["started"] for b in busy)
        actors = sorted({b["actor"] for b in busy})
        for b in busy:
            ax.barh(actors.index(b["actor"]), b["seconds"], left=b["started"] - origin, color="#2b6cb0", edgecolor="white")
        ax.set_yticks(range(len(actors)), [f"actor {i + 1}" for i in range(len(actors))])
    ax.set_title("units on each actor over time")
    ax.set_xlabel("seconds since the first unit started")
    fig.suptitle(f"corpus-nlp run {report.get('run_id')} ({report.get('status')})")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def render_html(report: dict[str, Any], png: bytes, statuses: dict[str, int], read_problems: list[str]) -> str:
    esc = html.escape
    units = report.get("units", {})
    rows = [
        ("status", report.get("status")),
        ("model", report.get("model")),
        ("input", report.get("input")),
        ("documents", f"{report.get('documents', 0):,} ({report.get('errors', 0)} with errors)"),
        ("tokens / sentences / entities", f"{report.get('tokens', 0):,} / {report.get('sentences', 0):,} / {report.get('entities', 0):,}"),
        ("throughput", f"{report.get('words_per_second', 0):,.0f} words/s over {report.get('seconds', 0):.1f} s"),
        ("units", ", ".join(f"{k} {v}" for k, v in units.items())),
        ("documents in OUTPUT by status", ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items()))),
        ("actors", f"{report.get('actors')} × {report.get('gpus_per_actor')} GPU"),
        ("started / finished", f"{report.get('started')} / {report.get('finished')}"),
    ]
    problems = [f"unreadable input {p}: {why}" for p, why in (report.get("bad_files") or {}).items()]
    problems += [f"failed unit ({u['paths']}): {u['error']}" for u in report.get("failed_units") or []]
    problems += [f"document error: {e}" for e in report.get("first_errors") or []]
    problems += list(report.get("problems") or []) + read_problems
    dups = report.get("duplicate_ids") or {}
    if dups.get("count"):
        problems.append(f"{dups['count']} duplicate id(s), e.g. {', '.join(dups.get('examples', []))}")
    table = "\n".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    items = "\n".join(f"<li>{esc(p)}</li>" for p in problems) or "<li>none</li>"
    image = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>corpus-nlp run {esc(str(report.get('run_id')))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}th{{text-align:left;padding-right:1em}}
img{{max-width:100%}}</style></head>
<body><h1>corpus-nlp run {esc(str(report.get('run_id')))}</h1>
<table>{table}</table>
<img alt="throughput, documents per status, top entity labels, units on each actor over time" src="data:image/png;base64,{image}">
<h2>Problems</h2><ul>{items}</ul>
<p>Output: {esc(str(report.get('output')))}</p></body></html>
"""


def write_report(report: dict[str, Any], output: str) -> dict[str, str]:
    """Write <run id>.png and .html beside the JSON report; returns their paths."""
    storage = Storage(output)
    problems: list[str] = []
    statuses = _status_counts(output, problems)
    png = render_png(report, statuses, _top_labels(output, problems))
    paths = {kind: storage.path("_reports", f"{report['run_id']}.{kind}") for kind in ("png", "html")}
    storage.write_bytes(paths["png"], png)
    storage.write_bytes(paths["html"], render_html(report, png, statuses, problems).encode())
    return paths

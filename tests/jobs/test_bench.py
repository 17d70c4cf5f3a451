import json

import pytest
from typer.testing import CliRunner

from jobs.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_runs_on_cpu_and_writes_json_and_png(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--shape", "tiny", "--words", "1500", "--batch-sizes", "8,32", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data["runs"]) == {"nlp.pipe", "nlp.pipe n_process=2", "corpus-nlp", "transformer bf16"}
    for run in data["runs"].values():
        assert run["words_per_s"] > 0 and run["words"] > 1000
    assert data["runs"]["corpus-nlp"]["errors"] == 0 and data["runs"]["corpus-nlp"]["ray_start_seconds"] > 0
    assert set(data["ratios"]) == {f"{run} / {base}" for run in ("corpus-nlp", "corpus-nlp after load")
                                   for base in ("nlp.pipe", "nlp.pipe n_process=2", "transformer bf16")}
    e2e = data["runs"]["corpus-nlp"]
    assert 0 < e2e["processing_seconds"] < e2e["seconds"] and e2e["processing_words_per_s"] > e2e["words_per_s"]
    assert all(v > 0 for v in data["peak_rss_mib"].values())
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_bench_corpus_nlp_alone_with_options(tmp_path):
    """--no-baselines: the run used to compare memory across corpus sizes; options are recorded."""
    result = CliRunner().invoke(app, ["bench", "--shape", "tiny", "--words", "1500", "--no-baselines", "--precision", "bf16",
                                      "--actors", "1", "--unit-mb", "0.001", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data["runs"]) == {"corpus-nlp", "transformer bf16"} and data["runs"]["transformer bf16"] is None
    assert data["runs"]["corpus-nlp"]["actors"] == 1 and data["runs"]["corpus-nlp"]["errors"] == 0
    assert data["options"] == {"precision": "bf16", "token_budget": None, "batch_chars": None, "gpus_per_actor": None, "actors": 1,
                               "unit_mb": "0.001", "layout": "polars", "texts": "documents", "documents": None, "exclude": None,
                               "distinct": False}
    run = data["runs"]["corpus-nlp"]
    assert run["units"] > 1 and run["row_groups_read"] == 1 and run["busy"]["share"] > 0.3 and len(run["busy"]["share_by_tenth"]) == 10
    assert run["commit_seconds"] > 0 and run["compact_seconds"] > 0 and run["driver_peak_rss_mib"] > 50
    assert run["forward_seconds"] > 0 and run["host_seconds"] > 0 and run["host_us_per_word"] > 0
    assert data["ratios"] == {} and set(data["peak_rss_mib"]) == {"corpus-nlp"}
    by_process = data["corpus_nlp_peak_rss_mib_by_process"]  # what grows, when memory grows
    assert {"driver", "pipeline actors", "raylet", "gcs_server"} <= set(by_process) and by_process["pipeline actors"] > 100
    halves = data["corpus_nlp_peak_rss_mib_by_half"]
    assert set(halves) == {"first half", "second half"} and max(halves.values()) == data["peak_rss_mib"]["corpus-nlp"]
    levels = data["corpus_nlp_rss_mib_percentiles"]
    assert 100 < levels["p50"] <= levels["p95"] <= data["peak_rss_mib"]["corpus-nlp"]
    processing = data["corpus_nlp_rss_mib_while_processing"]  # empty if processing took under one 0.2-s sample
    assert not processing or 100 < processing["p50"] <= processing["p95"] <= data["peak_rss_mib"]["corpus-nlp"]
    levels_by_process = data["corpus_nlp_rss_mib_while_processing_by_process"]
    assert not processing or 0 < min(levels_by_process["driver"].values()) < processing["p50"]
    assert "processing_started" not in data["runs"]["corpus-nlp"]


def test_memory_levels_while_processing_leave_out_the_start_and_show_a_trend():
    from jobs.bench import PeakRSS

    peak = PeakRSS()
    # 10 s of start at 100 bytes, 8 s of processing rising 1,000 -> 1,700 by second, 2 s of shutdown
    # the rise is the actors'; the driver stays at 300
    for second in range(20):
        rss = 100 if second < 10 or second >= 18 else 1000 + 100 * (second - 10)
        peak.record(second, 1000.0 + second, rss, {"driver": min(rss, 300), "pipeline actors": rss - min(rss, 300)})
    levels = peak.processing_levels(started=1010.0, seconds=7.0)
    assert levels == {"p50": 1400, "p95": 1700, "p50 quarter 1": 1100, "p50 quarter 2": 1300,
                      "p50 quarter 3": 1500, "p50 quarter 4": 1700}
    assert peak.kind_levels(started=1010.0, seconds=7.0) == {
        "driver": {"p50 quarter 1": 300, "p50 quarter 2": 300, "p50 quarter 3": 300, "p50 quarter 4": 300},
        "pipeline actors": {"p50 quarter 1": 800, "p50 quarter 2": 1000, "p50 quarter 3": 1200, "p50 quarter 4": 1400},
    }
    assert peak.percentiles()["p50"] == 100  # over every sample: the start and shutdown pull it down
    assert peak.processing_levels(started=2000.0, seconds=5.0) == {}


def test_bench_sweeps_precisions_with_a_baseline_on_the_first_words(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--shape", "tiny", "--words", "3000", "--baseline-words", "1000",
                                      "--batch-sizes", "8", "--precision", "fp32,bf16", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert {"corpus-nlp fp32", "corpus-nlp bf16"} <= set(data["runs"])
    assert data["runs"]["nlp.pipe"]["words"] < data["runs"]["corpus-nlp bf16"]["words"] / 2
    assert data["runs"]["corpus-nlp bf16"]["precision"] == "bf16"
    assert "corpus-nlp after load / nlp.pipe (bf16)" in data["ratios"]


def test_bench_writes_the_layouts_users_have_and_compares_their_wall_times(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--shape", "tok2vec-tiny", "--texts", "sentences", "--documents", "200",
                                      "--layout", "polars,row-groups-16,files-40", "--no-baselines", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    runs = data["runs"]
    assert {r["layout"] for r in runs.values() if r} == {"polars", "row-groups-16", "files-40"}
    assert runs["corpus-nlp polars"]["row_groups_read"] == 1 and runs["corpus-nlp files-40"]["files"] == 40
    assert runs["corpus-nlp row-groups-16"]["row_groups_read"] > 10
    assert {r["documents"] for r in runs.values() if r} == {200}  # the same sentences each time
    assert set(data["ratios"]) == {"corpus-nlp row-groups-16 seconds / corpus-nlp polars seconds",
                                   "corpus-nlp files-40 seconds / corpus-nlp polars seconds"}


def test_bench_corpus_is_a_fixed_shuffle_so_every_size_has_the_same_mix(tmp_path):
    from jobs.bench import load_texts

    docs = tmp_path / "docs.jsonl"
    # the file's order puts its long documents first, as EWT's docs.jsonl does
    texts = [" ".join(["long"] * 50) + f" {i}" for i in range(10)] + [f"short {i}" for i in range(90)]
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    small, large = load_texts(str(docs), 200), load_texts(str(docs), 2000)
    assert small == large[: len(small)] and load_texts(str(docs), 200) == small  # same order every run
    assert sorted(large[:100]) == sorted(texts) and large[100:200] == large[:100]  # each document once per round
    long_share = sum(t.startswith("long") for t in small) / len(small)
    assert long_share < 0.5  # the file's first 200 words would all be long documents


def test_memory_samples_cost_the_driver_little_and_keep_kinds_that_come_and_go():
    """The bench's process is the run's driver: its samples must not grow its memory much (a long run
    takes 5 a second for an hour), and a kind of process that starts mid-run counts from then on."""
    import tracemalloc

    from jobs.bench import PeakRSS

    peak = PeakRSS()
    tracemalloc.start()
    for i in range(10_000):
        kinds = {"driver": 500 << 20, "raylet": 40 << 20} | ({"pipeline actors": (1800 << 20) + i} if i >= 5_000 else {})
        peak.record(i * 0.2, 1000.0 + i * 0.2, sum(kinds.values()), kinds)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 1_500_000  # about 8 bytes a number; a tuple and a dict per sample took 6.4 MB
    assert peak.by_kind == {"driver": 500 << 20, "raylet": 40 << 20, "pipeline actors": (1800 << 20) + 9_999}
    assert peak.kind_samples[0] == {"driver": 500 << 20, "raylet": 40 << 20}
    actors = peak.kind_levels(started=1000.0, seconds=2_000.0)["pipeline actors"]  # only from sample 5,000 on
    assert actors == {"p50 quarter 3": (1800 << 20) + 6_250, "p50 quarter 4": (1800 << 20) + 8_750}
    assert peak.percentiles()["p50"] == (2340 << 20) + 5_000  # the smallest of the second half, actors running

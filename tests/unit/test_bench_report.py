"""The bench's arithmetic and rendering: spreads, per-repetition ratios, verdicts, RESULTS.md."""

from __future__ import annotations

from bench import report
from bench.retention_load import summarize
from bench.stats import Row, Target, ratios, spread


def test_spread_is_median_min_max():
    assert spread([3.0, 1.0, 2.0]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([])["median"] is None


def test_ratios_pair_repetitions_not_medians():
    # Noise shared by both sides of a repetition cancels in its ratio.
    assert ratios([10.0, 40.0], [20.0, 80.0]) == [0.5, 0.5]


def test_target_verdicts_compare_the_ratio_when_there_is_one():
    ok = Target("tp", spread([60.0]), "jobs/s", 0.5, ">=", spread([0.6]), spread([100.0]))
    missed = Target("lat", spread([30.0]), "ms", 25.0, "<=")
    unmeasured = Target("relay", spread([]), "ms", 100.0, "<=")
    assert (ok.met(), missed.met(), unmeasured.met()) == (True, False, None)


def _doc(tmp_rows, targets) -> dict:
    return {
        "when": "2026-11-22T05:00:00+00:00",
        "quick": True,
        "repeats": 2,
        "sizes": {"repeats": 2},
        "machine": {"cpus": 2, "python": "3.11.7", "load_before": "1.0 1.0 1.0"},
        "elapsed_s": 90.0,
        "results": "latest.json",
        "rows": tmp_rows,
        "targets": targets,
    }


def test_results_md_keeps_the_hand_written_part(tmp_path):
    path = tmp_path / "RESULTS.md"
    row = Row("e2e", "throughput", "jobs/s", [80.0, 90.0], [500.0, 600.0]).as_dict()
    target = Target("tp", spread([85.0]), "jobs/s", 0.5, ">=", spread([0.15]), spread([550.0]))
    report.write_results_md(path, _doc([row], [target.as_dict()]))
    path.write_text(path.read_text().replace("(Hand-written", "Postgres is the bottleneck. (Hand"))
    report.write_results_md(path, _doc([row], [target.as_dict()]))
    text = path.read_text()
    assert "Postgres is the bottleneck." in text
    assert text.count(report.BEGIN) == 1
    row_line = "| e2e | throughput | jobs/s | 85.0 (80.0-90.0) | 550 (500-600) | 0.15x (0.15-0.16)"
    assert row_line in text
    assert "| tp | 85.0 jobs/s | 550 | 0.15x | >= 0.50x | **missed** |" in text


def test_retention_rates_come_from_the_second_half():
    # (t, submitted, present, finished present, events): 10 jobs/s finish; from t=5 the
    # sweep removes them as fast, so the table holds ~30 jobs.
    samples = [(t, 10 * t, min(10 * t, 30), min(10 * t, 30), 0) for t in range(11)]
    out = summarize(samples, 3.0)
    assert out["finished_per_s"] == 10.0
    assert out["deleted_per_s"] == 10.0
    assert out["jobs_present_max"] == 30

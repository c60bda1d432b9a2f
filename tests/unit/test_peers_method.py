"""The peers harness' pure parts: /proc stat lines, the drain from timestamps, the table."""

from __future__ import annotations

import pytest

from bench import figures
from bench.peers import method

# A real line's shape, with a command name holding a space and a ')' (as a thread may).
LINE = (
    "4242 (celery) worker) S 4200 4242 4242 0 -1 4194560 9000 0 0 0 "
    "250 50 30 20 20 0 3 0 123456 250000000 9000 18446744073709551615"
)


def test_parse_stat_reads_ppid_and_cpu_after_the_last_parenthesis():
    ppid, own, reaped = method.parse_stat(LINE)
    assert ppid == 4200
    assert own == pytest.approx(300 / method.TICKS)
    assert reaped == pytest.approx(50 / method.TICKS)


def test_parse_stat_of_this_process():
    with open("/proc/self/stat") as f:
        ppid, own, reaped = method.parse_stat(f.read())
    assert ppid > 0 and own >= 0 and reaped >= 0


def test_drain_from_first_start_to_last_finish():
    d = method.drain_rate(1000, 100.0, 102.0, first_is_start=True)
    assert d["per_s"] == pytest.approx(500.0)
    assert d["seconds"] == pytest.approx(2.0)


def test_drain_from_first_finish_leaves_one_job_out():
    assert method.drain_rate(1001, 100.0, 102.0, first_is_start=False)["per_s"] == 500.0


def test_drain_accepts_postgres_numerics_and_no_span():
    from decimal import Decimal

    assert method.drain_rate(10, Decimal("1.5"), Decimal("2.5"), True)["per_s"] == 10.0
    assert method.drain_rate(1, 5.0, 5.0, True)["per_s"] is None


def test_cpu_delta_counts_new_processes_from_zero():
    before = {1: 2.0, 2: 1.0}
    after = {1: 2.5, 3: 0.25}  # 2 exited, 3 started in between
    assert method.delta(before, after) == pytest.approx(0.75)
    assert method.per_job_ms(0.75, 250) == pytest.approx(3.0)
    assert method.per_job_ms(1.0, 0) is None


def _rep(drain: float, cpu: float) -> dict:
    return {
        "enqueue_single_per_s": 100.0,
        "enqueue_bulk_per_s": 1000.0,
        "client_cpu_ms_per_job_single": 1.0,
        "drain": {
            "per_s": drain,
            "worker_cpu_ms_per_job": cpu,
            "postgres_cpu_ms_per_job": None,
            "redis_cpu_ms_per_job": 0.1,
        },
        "round_trip": {"p50_ms": 5.0, "p99_ms": 9.0},
    }


def test_peers_table_takes_the_ratio_within_each_repetition():
    peers = {
        "reps": [
            {"x": _rep(100.0, 4.0), "celery_raw": _rep(400.0, 1.0)},
            {"x": _rep(300.0, 2.0), "celery_raw": _rep(600.0, 1.0)},
        ],
        "labels": {"x": "X", "celery_raw": "raw"},
        "notes": {},
    }
    x, raw = figures.peers_table(peers)
    assert x["system"] == "X"
    assert x["drain_vs_raw"]["min"] == pytest.approx(0.25)
    assert x["drain_vs_raw"]["max"] == pytest.approx(0.5)
    assert x["cells"]["worker CPU ms/job"]["median"] == pytest.approx(3.0)
    assert x["cells"]["Postgres CPU ms/job"]["n"] == 0  # not measured: no figure, no zero
    assert raw["drain_vs_raw"]["median"] == pytest.approx(1.0)

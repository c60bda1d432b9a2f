"""`python -m bench.run`: Orchestra's job pipeline beside raw Celery, measured in the same run.

The machine is shared and noisy, so absolute figures mean little; each Orchestra figure is
printed next to a baseline measured seconds before on the same machine, with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from bench import baseline, noop, orchestra, procs
from bench.measure import latency_stats
from bench.sandbox import ROOT, log, sandbox

RESULTS = ROOT / "bench" / "results"
SIZES = {"jobs": 300, "samples": 500, "round_trips": 300}
QUICK_SIZES = {"jobs": 100, "samples": 60, "round_trips": 40}
# Unrecorded iterations first: connections, lazy imports and the pool children warm up.
WARM = 10
WORKER_FLAGS = "-c 2"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Orchestra's job pipeline beside raw Celery baselines of the same run.",
    )
    p.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    p.add_argument("--jobs", type=int, help=f"jobs drained for throughput ({SIZES['jobs']})")
    p.add_argument("--samples", type=int, help=f"submit-latency samples ({SIZES['samples']})")
    p.add_argument(
        "--round-trips", type=int, help=f"sequential end-to-end samples ({SIZES['round_trips']})"
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="JSON results")
    return p.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> dict[str, int]:
    """The run's sizes: the defaults (or the quick ones), then what the command line says."""
    sizes = dict(QUICK_SIZES if args.quick else SIZES)
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    if min(sizes.values()) < 2:
        raise SystemExit("every size must be at least 2 (quantiles need two samples)")
    return sizes


def drain_timeout(n: int) -> float:
    """Generous: a throughput run is aborted, not waited on forever, when the worker stalls."""
    return 60 + n / 5


def run_baseline(settings: Settings, sizes: dict[str, int]) -> dict:
    """Raw Celery: one `celery -A bench.noop worker -c 2`, no-op tasks."""
    b = baseline.connect(settings)
    try:
        with ExitStack() as stack:
            worker = procs.start("noop-worker", noop.WORKER_COMMAND, procs.child_env(settings))
            stack.callback(procs.stop, worker)
            # The first tasks also wait for the worker to boot: hence the long timeout.
            baseline.drain(b, WARM, worker, 60, "warm-up")
            log(f"baseline: throughput, {sizes['jobs']} no-ops")
            drained = baseline.drain(b, sizes["jobs"], worker, drain_timeout(sizes["jobs"]), "tp")
            log(f"baseline: {sizes['round_trips']} round trips")
            baseline.round_trips(b, WARM, worker)
            trips = baseline.round_trips(b, sizes["round_trips"], worker)
        # The worker is gone: submit latency is measured on the producer path alone.
        log(f"baseline: {sizes['samples']} sends")
        sends = baseline.send_latencies(b, sizes["samples"], WARM)
    finally:
        baseline.close(b)
    return {
        "throughput": drained,
        "submit_latency": latency_stats(sends),
        "round_trip": latency_stats(trips),
    }


def run_orchestra(settings: Settings, sizes: dict[str, int]) -> dict:
    """Orchestra: the Procfile's `worker` (with `-c 2`) and `api`, echo jobs."""
    commands = procs.read_procfile()
    env = procs.child_env(settings)
    o = orchestra.connect(settings)
    try:
        with ExitStack() as stack:
            api = procs.start("api", commands["api"], env)
            stack.callback(procs.stop, api)
            with ExitStack() as worker_stack:
                worker = procs.start("worker", f"{commands['worker']} {WORKER_FLAGS}", env)
                worker_stack.callback(procs.stop, worker)
                orchestra.wait_api_ready(o, api)
                orchestra.drain(o, WARM, worker, 60, "warm-up")
                log(f"orchestra: throughput, {sizes['jobs']} echo jobs")
                n = sizes["jobs"]
                drained = orchestra.drain(o, n, worker, drain_timeout(n), "throughput")
                log(f"orchestra: {sizes['round_trips']} round trips")
                orchestra.round_trips(o, WARM, worker)
                trips = orchestra.round_trips(o, sizes["round_trips"], worker)
            # As for the baseline: no worker competes with the API for the CPU.
            log(f"orchestra: {sizes['samples']} HTTP submits")
            posts = orchestra.http_submit_latencies(o, sizes["samples"], WARM)
    finally:
        orchestra.close(o)
    return {
        "throughput": drained,
        "submit_latency": latency_stats(posts),
        "round_trip": latency_stats(trips),
    }


def rows_of(orch: dict, base: dict) -> list[dict]:
    """The compared figures: name, unit, Orchestra, baseline, ratio (Orchestra / baseline)."""
    picks = [
        ("throughput (drain, worker -c 2)", "jobs/s", "throughput", "per_s", "higher"),
        ("submit latency p50 (POST vs send_task)", "ms", "submit_latency", "p50_ms", "lower"),
        ("submit latency p99 (POST vs send_task)", "ms", "submit_latency", "p99_ms", "lower"),
        ("end-to-end p50 (submit -> completed)", "ms", "round_trip", "p50_ms", "lower"),
        ("end-to-end p99 (submit -> completed)", "ms", "round_trip", "p99_ms", "lower"),
    ]
    return [
        {
            "name": name,
            "unit": unit,
            "orchestra": orch[part][key],
            "baseline": base[part][key],
            "ratio": orch[part][key] / base[part][key],
            "better": better,
        }
        for name, unit, part, key, better in picks
    ]


def table(rows: list[dict], sizes: dict[str, int]) -> str:
    """The figures side by side, as printed."""
    head = (
        f"Orchestra vs raw Celery, same run ({os.cpu_count()} CPUs; {sizes['jobs']} jobs, "
        f"{sizes['samples']} submits, {sizes['round_trips']} round trips)"
    )
    lines = [head, f"{'benchmark':<40} {'unit':<7} {'orchestra':>10} {'baseline':>10} {'ratio':>8}"]
    for r in rows:
        lines.append(
            f"{r['name']:<40} {r['unit']:<7} {r['orchestra']:>10.2f} {r['baseline']:>10.2f} "
            f"{r['ratio']:>7.2f}x"
        )
    lines.append("ratio = orchestra / baseline (throughput: higher is better; latency: lower)")
    return "\n".join(lines)


def write_json(path: Path, rows: list[dict], orch: dict, base: dict, meta: dict) -> None:
    """Everything measured, for comparison across runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**meta, "rows": rows, "orchestra": orch, "baseline": base}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _terminate(signum, _frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so processes are stopped and the sandbox removed."""
    # A second TERM must not cut the cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Set up the sandbox, measure both sides, print and save the comparison."""
    args = parse_args(argv)
    sizes = sizes_of(args)
    os.chdir(ROOT)  # the Procfile's commands and alembic.ini are relative to the project
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    with sandbox() as settings:
        # Whatever reads the environment in this process (Settings.from_env) sees the sandbox.
        os.environ.update(settings.as_env())
        base = run_baseline(settings, sizes)
        orch = run_orchestra(settings, sizes)
    rows = rows_of(orch, base)
    print(table(rows, sizes), flush=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": sizes,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    write_json(args.output, rows, orch, base, meta)
    log(f"results in {args.output}, {meta['elapsed_s']} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

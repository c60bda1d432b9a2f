"""`python -m bench.run [--quick]`: Orchestra beside raw Celery, measured in the same run.

The machine is shared and noisy, so absolute figures mean little: the baseline and the
end-to-end sections run R times, alternating, and every figure is printed beside its
baseline of the same repetition with their ratio, as the median (min-max) over
repetitions. Writes bench/results/latest.json, bench/RESULTS.md (its generated block)
and bench/throughput_latency.png.
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
from bench import (
    baseline,
    batch,
    e2e,
    fairness,
    figures,
    large,
    noop,
    procs,
    relay_load,
    report,
    retention_load,
    streams,
)
from bench.measure import latency_stats
from bench.sandbox import ROOT, log, sandbox

RESULTS = ROOT / "bench" / "results"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
PLOT = ROOT / "bench" / "throughput_latency.png"
# Fixed durations where counts would make a run unbounded; counts where they are cheap.
SIZES = {
    "repeats": 3,
    "baseline_jobs": 1000,
    "sends": 1000,
    "round_trips": 200,
    "sustained_s": 15,
    "half_rate_s": 10,
    "idle_trips": 100,
    "relay_clients": 5000,
    "relay_rate": 200,
    "relay_s": 15,
    "retention_rate": 30,
    "retention_s": 24,
    "small_jobs": 10_000,
    "large_jobs": 1_000_000,
    "calls": 100,
    "peer_jobs": 2000,
    "peer_trips": 100,
    "batch_s": 10,
    "noisy_jobs": 5000,
    "noisy_slots": 25,
    "streams": 200,
    "stream_tokens": 500,
}
QUICK_SIZES = {
    "repeats": 1,
    "baseline_jobs": 300,
    "sends": 300,
    "round_trips": 50,
    "sustained_s": 8,
    "half_rate_s": 6,
    "idle_trips": 30,
    "relay_clients": 500,
    "relay_rate": 100,
    "relay_s": 6,
    "retention_rate": 20,
    "retention_s": 12,
    "small_jobs": 2_000,
    "large_jobs": 50_000,
    "calls": 30,
    "peer_jobs": 300,
    "peer_trips": 20,
    "batch_s": 5,
    "noisy_jobs": 1000,
    "noisy_slots": 25,
    "streams": 50,
    "stream_tokens": 150,
}
SECTIONS = ("e2e", "batch", "fairness", "streams", "peers", "relay", "retention", "large")
WARM = 10
# High enough that the bench measures the limiter's cost, never its refusals.
RATE_LIMIT = "100000000/minute"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Orchestra beside raw Celery baselines of the same run.",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, one repetition (<2 min)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument(
        "--set", nargs="+", default=[], metavar="NAME=N", help="override a size, e.g. repeats=5"
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="JSON results")
    p.add_argument("--no-report", action="store_true", help="leave RESULTS.md and the plot alone")
    return p.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> dict[str, int]:
    """The run's sizes: the defaults (or the quick ones), then what `--set` says."""
    sizes = dict(QUICK_SIZES if args.quick else SIZES)
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit():
            raise SystemExit(f"--set {item}: expected one of {', '.join(sizes)} = an integer")
        sizes[name] = int(value)
    return sizes


def run_baseline(settings: Settings, sizes: dict[str, int]) -> dict:
    """Raw Celery: `celery -A bench.noop worker -c 2` (prefork), no-op tasks."""
    b = baseline.connect(settings)
    try:
        with ExitStack() as stack:
            worker = procs.start("noop-worker", noop.WORKER_COMMAND, procs.child_env(settings))
            stack.callback(procs.stop, worker)
            baseline.drain(b, WARM, worker, 60, "warm-up")  # also waits for the worker's boot
            n = sizes["baseline_jobs"]
            drained = baseline.drain(b, n, worker, 60 + n / 5, "tp")
            baseline.round_trips(b, WARM, worker)
            trips = baseline.round_trips(b, sizes["round_trips"], worker)
        # The worker is gone: the send rate is the producer's alone.
        sends = baseline.send_latencies(b, sizes["sends"], WARM)
    finally:
        baseline.close(b)
    return {
        "drain": drained,
        "send_per_s": len(sends) / sum(sends),
        "send_latency": latency_stats(sends),
        "round_trip": latency_stats(trips),
    }


def run_peers(settings: Settings, sizes: dict[str, int]) -> dict:
    """The peers section: every system that runs here, by one method, R times (each
    repetition runs them all in turn, so a ratio to raw Celery is taken within it)."""
    from bench.peers import method, systems

    peers, missing = systems.available()
    for why in missing:
        log(f"peers: {why}")
    reps = []
    for k in range(sizes["repeats"]):
        log(f"repetition {k + 1}/{sizes['repeats']}: peers")
        reps.append(
            {p.key: method.run(p, settings, sizes["peer_jobs"], sizes["peer_trips"]) for p in peers}
        )
    labels = {p.key: p.label for p in peers}
    notes = {p.key: p.note for p in peers}
    return {
        "reps": reps,
        "labels": labels,
        "notes": notes,
        "missing": missing,
        "jobs": sizes["peer_jobs"],
        "trips": sizes["peer_trips"],
    }


def _terminate(signum, _frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so processes are stopped and the sandbox removed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut cleanup short
    raise SystemExit(128 + signum)


def measure(settings: Settings, sizes: dict, sections) -> dict:
    """Run the sections; the raw results of each."""
    raw: dict = {}
    if "e2e" in sections:
        raw["baseline"], raw["e2e"] = [], []
        durations = {"sustained": sizes["sustained_s"], "half": sizes["half_rate_s"]}
        for k in range(sizes["repeats"]):
            log(f"repetition {k + 1}/{sizes['repeats']}: raw Celery")
            raw["baseline"].append(run_baseline(settings, sizes))
            log(f"repetition {k + 1}/{sizes['repeats']}: Orchestra end to end")
            raw["e2e"].append(e2e.run(settings, durations, sizes["idle_trips"]))
    if "batch" in sections:
        raw["batch"] = batch.run(settings, sizes["batch_s"])
    if "fairness" in sections:
        raw["fairness"] = fairness.run(settings, sizes["noisy_jobs"], sizes["noisy_slots"])
    if "streams" in sections:
        raw["streams"] = streams.run(settings, sizes["streams"], sizes["stream_tokens"])
    if "peers" in sections:
        raw["peers"] = run_peers(settings, sizes)
    if "relay" in sections:
        log(f"relay: {sizes['relay_clients']} clients")
        raw["relay"] = relay_load.run(
            settings, sizes["relay_clients"], sizes["relay_rate"], sizes["relay_s"]
        )
    if "retention" in sections:
        raw["retention"] = retention_load.run(
            settings, sizes["retention_rate"], sizes["retention_s"]
        )
    if "large" in sections:  # last: it leaves a big database behind
        raw["large"] = large.run(settings, sizes["small_jobs"], sizes["large_jobs"], sizes["calls"])
        raw["large"]["small_jobs"] = sizes["small_jobs"]
    return raw


def main(argv: list[str] | None = None) -> int:
    """Set up the sandbox, measure, print and save the comparison."""
    args = parse_args(argv)
    sizes = sizes_of(args)
    sections = args.only or SECTIONS
    os.chdir(ROOT)  # the Procfile's commands and alembic.ini are relative to the project
    signal.signal(signal.SIGTERM, _terminate)
    started, load = time.perf_counter(), os.getloadavg()
    with sandbox() as settings:
        settings = settings.with_(rate_limit=RATE_LIMIT)
        os.environ.update(settings.as_env())  # what reads the environment here sees the sandbox
        raw = measure(settings, sizes, sections)
    rows, targets = figures.assemble(raw)
    doc = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeats": sizes["repeats"],
        "sizes": sizes,
        "sections": list(sections),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": " ".join(f"{x:.1f}" for x in load),
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
        "results": args.output.name,
        "rows": [r.as_dict() for r in rows],
        "targets": [t.as_dict() for t in targets],
        "peers": figures.peers_section(raw["peers"]) if "peers" in raw else None,
    }
    write(args, doc, raw)
    if doc["rows"]:
        print(report.targets_table(doc["targets"]), "", report.figures_table(doc["rows"]), sep="\n")
    if doc["peers"]:
        print("", report.peers_table(doc["peers"]), sep="\n")
    if "batch" in raw:
        accepted, drained = raw["batch"]["accept"], raw["batch"]["drain"]
        print(f"\nbatch route: {accepted['per_s']:.0f} jobs/s accepted from one client "
              f"({accepted['jobs']} jobs in {accepted['seconds']:.1f} s, "
              f"{accepted['batch_ms_median']:.0f} ms a batch of {raw['batch']['batch_size']}); "
              f"backlog drained at {drained['per_s']:.0f} jobs/s by the worker (-c 2)")
    log(f"{doc['elapsed_s']:.0f} s in all; results in {args.output}")
    return 0


def write(args: argparse.Namespace, doc: dict, raw: dict) -> None:
    """The JSON results (with every raw reading and plan), RESULTS.md and the plot."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plans = raw.get("large", {}).pop("plans", None)
    if plans:
        (args.output.parent / "explain.txt").write_text(
            "\n\n".join(f"== {name}\n{plan}" for name, plan in plans.items()) + "\n"
        )
    series = [r.pop("series") for r in raw.get("e2e", [])]
    args.output.write_text(json.dumps({**doc, "raw": raw}, indent=1, default=str) + "\n")
    if args.no_report:
        return
    report.write_results_md(RESULTS_MD, doc)
    if series:
        last = series[-1]
        last["title"] = (
            f"Orchestra end to end, last repetition ({doc['when']}, "
            f"{'quick' if doc['quick'] else 'default'} mode; 2 shared CPUs)"
        )
        report.plot(PLOT, last)


if __name__ == "__main__":
    sys.exit(main())

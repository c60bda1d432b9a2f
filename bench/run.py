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
from bench import baseline, e2e, large, noop, procs, relay_load, report, retention_load
from bench.measure import latency_stats
from bench.sandbox import ROOT, log, sandbox
from bench.stats import Row, Target, spread

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
}
SECTIONS = ("e2e", "relay", "retention", "large")
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


def _col(reps: list[dict], *path) -> list[float]:
    out = []
    for r in reps:
        for key in path:
            r = r[key]
        out.append(r)
    return out


def e2e_rows(base: list[dict], orch: list[dict]) -> list[Row]:
    """End-to-end figures beside raw Celery's, repetition by repetition."""
    s = "end to end"
    return [
        Row(
            s,
            "throughput: completed events received/s vs no-op drain",
            "jobs/s",
            _col(orch, "throughput", "per_s"),
            _col(base, "drain", "per_s"),
            "4 HTTP clients, worker -c 2",
        ),
        Row(
            s,
            "submit p50: POST /jobs vs apply_async",
            "ms",
            _col(orch, "submit_latency", "p50_ms"),
            _col(base, "send_latency", "p50_ms"),
            "at half the sustained rate",
        ),
        Row(
            s,
            "submit p99: POST /jobs vs apply_async",
            "ms",
            _col(orch, "submit_latency", "p99_ms"),
            _col(base, "send_latency", "p99_ms"),
            "at half the sustained rate",
        ),
        Row(
            s,
            "idle round trip p50: POST -> completed received vs .get()",
            "ms",
            _col(orch, "idle_round_trip", "p50_ms"),
            _col(base, "round_trip", "p50_ms"),
            "one job at a time",
        ),
        Row(
            s,
            "idle round trip p99",
            "ms",
            _col(orch, "idle_round_trip", "p99_ms"),
            _col(base, "round_trip", "p99_ms"),
        ),
        Row(
            s,
            "status latency p50: created_at -> Socket.IO client",
            "ms",
            _col(orch, "status_latency", "p50_ms"),
            None,
            "at half the sustained rate",
        ),
        Row(
            s,
            "status latency p99",
            "ms",
            _col(orch, "status_latency", "p99_ms"),
            None,
            "at half the sustained rate",
        ),
        Row(
            s,
            "of which created_at -> Redis subscriber, p99",
            "ms",
            _col(orch, "status_latency_to_redis", "p99_ms"),
            None,
            "commit + publish, before the relay",
        ),
        Row(
            s,
            "status latency p99, saturated",
            "ms",
            _col(orch, "status_latency_saturated", "p99_ms"),
            None,
            "during the sustained phase",
        ),
        Row(
            s,
            "submit p99, saturated",
            "ms",
            _col(orch, "submit_latency_saturated", "p99_ms"),
            None,
            "during the sustained phase",
        ),
        Row(
            "baseline",
            "apply_async rate (one producer)",
            "tasks/s",
            _col(base, "send_per_s"),
            None,
            "raw Celery alone",
        ),
    ]


def e2e_targets(base: list[dict], orch: list[dict]) -> list[Target]:
    """The issue's end-to-end targets."""
    tp, drain = _col(orch, "throughput", "per_s"), _col(base, "drain", "per_s")
    rt, brt = _col(orch, "idle_round_trip", "p50_ms"), _col(base, "round_trip", "p50_ms")
    from bench.stats import ratios

    return [
        Target(
            "end-to-end throughput >= 0.5 x raw drain",
            spread(tp),
            "jobs/s",
            0.5,
            ">=",
            spread(ratios(tp, drain)),
            spread(drain),
        ),
        Target(
            "idle submit->completed p50 <= 2 x raw round trip p50",
            spread(rt),
            "ms",
            2.0,
            "<=",
            spread(ratios(rt, brt)),
            spread(brt),
        ),
        Target(
            "status latency p99 <= 25 ms at half the sustained rate",
            spread(_col(orch, "status_latency", "p99_ms")),
            "ms",
            25.0,
            "<=",
        ),
    ]


def relay_parts(r: dict, quick: bool) -> tuple[list[Row], list[Target]]:
    """The relay section's row and target."""
    d = r["delivery"] or {"p50_ms": None, "p99_ms": None}
    note = (
        f"{r['connected']}/{r['clients']} clients connected in {r['connect_s']:.0f} s; "
        f"{r['received']}/{r['sent']} events at {r['rate']:.0f}/s"
        + ("; QUICK: fewer clients than the target's 5,000" if r["clients"] < 5000 else "")
    )
    p50 = [d["p50_ms"]] if d["p50_ms"] is not None else []
    p99 = [d["p99_ms"]] if d["p99_ms"] is not None else []
    rows = [
        Row("relay", "delivery p50: publish -> client", "ms", p50, None, note),
        Row("relay", "delivery p99: publish -> client", "ms", p99, None, note),
    ]
    ok = r["connected"] == r["clients"] and r["received"] == r["sent"]
    target = Target(
        f"one relay holds {r['clients']:,} clients, p99 delivery <= 100 ms",
        spread(p99 if ok else []),
        "ms",
        100.0,
        "<=",
        note=note if ok else "clients or events lost: " + note,
    )
    return rows, [target]


def retention_parts(r: dict) -> tuple[list[Row], list[Target]]:
    """The growth section: deleted/s beside finished/s."""
    note = (
        f"RETENTION_S={r['retention_s']:.0f}; jobs present max {r['jobs_present_max']}, "
        f"at the end {r['jobs_present_end']} of {r['submitted']} submitted"
    )
    rows = [
        Row(
            "retention",
            "rows deleted/s vs jobs finished/s",
            "jobs/s",
            [r["deleted_per_s"]],
            [r["finished_per_s"]],
            note,
        ),
    ]
    target = Target(
        "retention sweep deletes >= finished (ratio >= 0.9: sampling)",
        spread([r["deleted_per_s"]]),
        "jobs/s",
        0.9,
        ">=",
        spread([r["deleted_per_s"] / r["finished_per_s"]]) if r["finished_per_s"] else spread([]),
        spread([r["finished_per_s"]]),
        note,
    )
    return rows, [target]


def large_parts(r: dict) -> tuple[list[Row], list[Target]]:
    """Each call at the large size beside the same call at the small size: over HTTP, and
    the query alone inside Postgres (EXPLAIN ANALYZE's execution time)."""
    rows, targets = [], []
    size = f"{r['sizes']['jobs']:,} jobs, {r['sizes']['events']:,} events"
    base = f"baseline: {r['small_jobs']:,} jobs"
    for name, big in r["large"].items():
        small, db_big, db_small = r["small"][name], r["large_in_db"][name], r["small_in_db"][name]
        rows.append(
            Row("large table", f"{name}: HTTP p50", "ms", [big["p50_ms"]], [small["p50_ms"]], base)
        )
        rows.append(
            Row("large table", f"{name}: HTTP p99", "ms", [big["p99_ms"]], [small["p99_ms"]], base)
        )
        rows.append(
            Row(
                "large table",
                f"{name}: in Postgres p99",
                "ms",
                [db_big["p99_ms"]],
                [db_small["p99_ms"]],
                base,
            )
        )
        targets.append(
            Target(
                f"{name}: HTTP p99 <= 20 ms at {size}",
                spread([big["p99_ms"]]),
                "ms",
                20.0,
                "<=",
                note=f"query in Postgres p99 {db_big['p99_ms']:.2f} ms",
            )
        )
    return rows, targets


def _terminate(signum, _frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so processes are stopped and the sandbox removed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut cleanup short
    raise SystemExit(128 + signum)


def measure(settings: Settings, sizes: dict, sections, quick: bool) -> dict:
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


def assemble(raw: dict, quick: bool) -> tuple[list[Row], list[Target]]:
    """The rows and targets of whatever sections ran."""
    rows, targets = [], []
    if "e2e" in raw:
        rows += e2e_rows(raw["baseline"], raw["e2e"])
        targets += e2e_targets(raw["baseline"], raw["e2e"])
    for name, parts in (
        ("relay", relay_parts),
        ("retention", retention_parts),
        ("large", large_parts),
    ):
        if name in raw:
            r, t = parts(raw[name], quick) if name == "relay" else parts(raw[name])
            rows, targets = rows + r, targets + t
    return rows, targets


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
        raw = measure(settings, sizes, sections, args.quick)
    rows, targets = assemble(raw, args.quick)
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
    }
    write(args, doc, raw)
    print(report.targets_table(doc["targets"]), "", report.figures_table(doc["rows"]), sep="\n")
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

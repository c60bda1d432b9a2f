"""The figures of a run: rows beside their baselines, and the issue's targets."""

from __future__ import annotations

from bench.stats import Row, Target, ratios, spread


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


def e2e_cpu_rows(orch: list[dict]) -> list[Row]:
    """CPU per job of each process over the sustained phase (the stack's processes with their
    children, the run database's Postgres backends, the Redis server, the bench's clients)."""
    per = [r["throughput"].get("cpu_ms_per_job") for r in orch]
    if not all(per):
        return []
    return [
        Row(
            "end to end",
            f"CPU per job at saturation: {name}",
            "ms",
            [p[name] for p in per if p.get(name) is not None],
            None,
            "sustained phase; clients: the HTTP submitters and the Socket.IO listener"
            if name == "clients"
            else ("all Redis (shared machine)" if name == "redis" else ""),
        )
        for name in per[0]
    ]


def e2e_targets(base: list[dict], orch: list[dict]) -> list[Target]:
    """The issue's end-to-end targets."""
    tp, drain = _col(orch, "throughput", "per_s"), _col(base, "drain", "per_s")
    rt, brt = _col(orch, "idle_round_trip", "p50_ms"), _col(base, "round_trip", "p50_ms")

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


def relay_parts(r: dict) -> tuple[list[Row], list[Target]]:
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
        small = r["small"][name]
        rows.append(
            Row("large table", f"{name}: HTTP p50", "ms", [big["p50_ms"]], [small["p50_ms"]], base)
        )
        rows.append(
            Row("large table", f"{name}: HTTP p99", "ms", [big["p99_ms"]], [small["p99_ms"]], base)
        )
        # A call of several reads (`GET /metrics`) has no one query to explain.
        db_big, db_small = r["large_in_db"].get(name), r["small_in_db"].get(name)
        if db_big is not None:
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
        note = f"query in Postgres p99 {db_big['p99_ms']:.2f} ms" if db_big else ""
        if name == "GET /metrics" and "counts_s" in r:
            note = "reads the counts the sweep left in Redis"
        targets.append(
            Target(
                f"{name}: HTTP p99 <= 20 ms at {size}",
                spread([big["p99_ms"]]),
                "ms",
                20.0,
                "<=",
                note=note,
            )
        )
    if "counts_s" in r:
        counts = r["counts_s"]
        rows.append(
            Row(
                "large table",
                "sweep: count jobs by status for /metrics (each METRICS_COUNTS_INTERVAL_S)",
                "ms",
                [counts["large"] * 1000],
                [counts["small"] * 1000],
                base,
            )
        )
    return rows, targets


def fairness_parts(r: dict) -> tuple[list[Row], list[Target]]:
    """Noisy neighbour: B's wait beside raw Celery's FIFO, A's throughput beside the unfair
    run's, and the admission pass's cost per dispatched job."""
    fair, unfair, raw, cost = r["fair"], r["unfair"], r["raw"], r["admission"]
    s = "noisy neighbour"
    note = (f"A: {fair['a_jobs']:,} jobs of {r['job_s']} s; B: one every {r['b_every_s']} s; "
            f"threads pool of {r['slots']}")
    rows = [
        Row(s, "B's queue wait p50: fair vs raw Celery FIFO", "ms",
            [fair["b_wait"]["p50_ms"]], [raw["b_wait"]["p50_ms"]], note),
        Row(s, "B's queue wait p99: fair vs raw Celery FIFO", "ms",
            [fair["b_wait"]["p99_ms"]], [raw["b_wait"]["p99_ms"]], note),
        Row(s, "B's queue wait p99: unfair (scheduler off) vs raw Celery FIFO", "ms",
            [unfair["b_wait"]["p99_ms"]], [raw["b_wait"]["p99_ms"]], note),
        Row(s, "A's throughput: fair vs unfair", "jobs/s",
            [fair["a_per_s"]], [unfair["a_per_s"]], note),
        Row(s, "A's throughput: fair vs raw Celery", "jobs/s",
            [fair["a_per_s"]], [raw["a_per_s"]], note),
        Row(s, "CPU per job, all processes: fair vs unfair", "ms",
            [sum(fair["cpu"].values())], [sum(unfair["cpu"].values())],
            "worker {worker_ms:.1f} + Postgres {postgres_ms:.1f} + submitter {bench_ms:.1f} "
            "(fair)".format(**fair["cpu"])),
        Row(s, "admission pass p50 (one job admitted)", "ms", [cost["pass"]["p50_ms"]], None,
            f"{cost['backlog']:,} waiting jobs of {cost['tenants']} tenants"),
        Row(s, "admission CPU per dispatched job: client", "ms", [cost["client_ms"]]),
        Row(s, "admission CPU per dispatched job: Postgres", "ms", [cost["postgres_ms"]]),
    ]
    targets = [
        Target("noisy neighbour: B's p99 queue wait <= 1 s while A's backlog drains",
               spread([fair["b_wait"]["p99_ms"]]), "ms", 1000.0, "<=",
               baseline=spread([raw["b_wait"]["p99_ms"]]), note="baseline: raw Celery FIFO"),
        Target("noisy neighbour: A's throughput >= 0.9x the unfair run's",
               spread([fair["a_per_s"]]), "jobs/s", 0.9, ">=",
               spread([fair["a_per_s"] / unfair["a_per_s"]]), spread([unfair["a_per_s"]])),
    ]
    return rows, targets


def streams_parts(r: dict) -> tuple[list[Row], list[Target]]:
    """Live output: token delivery beside the fake server's own floor, and Postgres's writes
    per job per second of streaming."""
    orch, direct = r["orchestra"], r["direct"]
    s = "live output"
    note = (f"{r['streams']} chat streams at once, {r['tokens']} tokens at {r['rate']:.0f}/s "
            "each; io worker (gevent), one relay")
    rows = [
        Row(s, "token delivery p50: fake server -> Socket.IO client vs -> direct SSE client",
            "ms", [orch["latency"]["p50_ms"]], [direct["latency"]["p50_ms"]], note),
        Row(s, "token delivery p99: fake server -> Socket.IO client vs -> direct SSE client",
            "ms", [orch["latency"]["p99_ms"]], [direct["latency"]["p99_ms"]], note),
        Row(s, "token delivery p99, first leg: sent -> its event stored", "ms",
            [orch["to_stored"]["p99_ms"]], None, "the worker: SSE read, coalescing, the round"),
        Row(s, "token delivery p99, second leg: event stored -> Socket.IO client", "ms",
            [orch["stored_to_client"]["p99_ms"]], None, "commit, publish, relay, client"),
        Row(s, "output events written per job per second", "rows", [orch["output_rows_per_job_s"]],
            None, "one per flush of a job: OUTPUT_FLUSH_INTERVAL_S 0.1"),
        Row(s, "Postgres rows written per job per second, all tables", "rows",
            [orch["rows_per_job_s"]], None,
            "pg_stat_database: events, their counters and published marks, heartbeats, outcomes"),
        Row(s, "Postgres transactions per job per second", "commits",
            [orch["commits_per_job_s"]], None, "one round of the output writer for every stream"),
        Row(s, "clients that saw every token once, in order", "streams", [orch["whole"]],
            [r["streams"]], f"{orch['failed']} jobs failed"),
    ]
    rows += [Row(s, f"token delivery p99 at {size['streams']} streams", "ms",
                 [size["latency"]["p99_ms"]], None,
                 f"p50 {size['latency']['p50_ms']:.0f} ms; "
                 f"{size['output_rows_per_job_s']:.1f} output events per job-second")
             for size in r.get("scaling", [])[:-1]]
    targets = [
        Target("live output: token delivery p99 <= 150 ms", spread([orch["latency"]["p99_ms"]]),
               "ms", 150.0, "<=", baseline=spread([direct["latency"]["p99_ms"]]),
               note="baseline: direct SSE clients of the same server"),
        Target("live output: Postgres writes (output events) per job per second <= 10",
               spread([orch["output_rows_per_job_s"]]), "rows", 10.0, "<="),
    ]
    return rows, targets


def assemble(raw: dict) -> tuple[list[Row], list[Target]]:
    """The rows and targets of whatever sections ran."""
    rows, targets = [], []
    if "e2e" in raw:
        rows += e2e_rows(raw["baseline"], raw["e2e"]) + e2e_cpu_rows(raw["e2e"])
        targets += e2e_targets(raw["baseline"], raw["e2e"])
    for name, parts in (
        ("fairness", fairness_parts),
        ("streams", streams_parts),
        ("relay", relay_parts),
        ("retention", retention_parts),
        ("large", large_parts),
    ):
        if name in raw:
            r, t = parts(raw[name])
            rows, targets = rows + r, targets + t
    return rows, targets


# The peers table's columns: (heading, path into one repetition's result of a system).
PEER_COLUMNS = (
    ("enqueue single /s", ("enqueue_single_per_s",)),
    ("enqueue bulk /s", ("enqueue_bulk_per_s",)),
    ("drain jobs/s", ("drain", "per_s")),
    ("worker CPU ms/job", ("drain", "worker_cpu_ms_per_job")),
    ("Postgres CPU ms/job", ("drain", "postgres_cpu_ms_per_job")),
    ("Redis CPU ms/job", ("drain", "redis_cpu_ms_per_job")),
    ("client CPU ms/job (single)", ("client_cpu_ms_per_job_single",)),
    ("idle p50 ms", ("round_trip", "p50_ms")),
    ("idle p99 ms", ("round_trip", "p99_ms")),
)


def peers_table(peers: dict, baseline: str = "celery_raw") -> list[dict]:
    """One line per system: each column's spread over repetitions, and its drain's ratio to
    raw Celery's drain of the same repetition."""
    reps = peers["reps"]
    lines = []
    for key, label in peers["labels"].items():
        mine = [r[key] for r in reps]
        cells = {}
        for heading, path in PEER_COLUMNS:
            cells[heading] = spread([v for v in _col(mine, *path) if v is not None])
        drains = _col(mine, "drain", "per_s")
        base = [r[baseline]["drain"]["per_s"] for r in reps] if baseline in reps[0] else []
        lines.append(
            {
                "key": key,
                "system": label,
                "cells": cells,
                "drain_vs_raw": spread(ratios(drains, base)) if base else spread([]),
                "note": peers["notes"].get(key, ""),
            }
        )
    return lines


def peers_section(peers: dict) -> dict:
    """What the report keeps of the peers section."""
    return {
        "jobs": peers["jobs"],
        "trips": peers["trips"],
        "missing": peers["missing"],
        "lines": peers_table(peers),
    }

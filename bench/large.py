"""Reads against a big table: `GET` a job, list pages and an event replay, small vs large.

The same calls are timed over HTTP against the real API twice: with a small table
(the baseline) and after filling it to the large size. A call whose cost does not grow
with the table has a ratio near 1. Each call's SQL is captured in this process (the
service functions the routes call, with the same arguments) and `EXPLAIN (ANALYZE,
BUFFERS)` of it is saved beside the results.
"""

from __future__ import annotations

import random
import time
import uuid
from contextlib import contextmanager

import requests
from sqlalchemy import event, select, text

from app import db, jobs, pages, telemetry
from app.config import Settings
from app.models import Job
from bench import fill, orchestra, procs
from bench.measure import latency_stats
from bench.sandbox import log

TAG = "fill-"
SAMPLE_IDS = 200


def _sample(o: orchestra.Orchestra) -> dict:
    """Random job ids and deep cursors to ask for (a few per call, so caches do not lie):
    the bench tenant's (other sections leave other tenants' jobs in the database)."""
    with db.transaction() as conn:
        mine = conn.execute(text("SELECT count(*) FROM jobs WHERE tenant_id = :t"),
                            {"t": o.tenant.id}).scalar_one()
        # A share of all the pages that holds about three samples' worth of the tenant's jobs.
        pct = min(100.0, max(0.05, 100.0 * SAMPLE_IDS * 3 / max(mine, 1)))
        rows = conn.execute(
            text(f"SELECT id, created_at FROM jobs TABLESAMPLE SYSTEM ({pct}) "
                 "WHERE tenant_id = :t LIMIT :k"),
            {"k": SAMPLE_IDS, "t": o.tenant.id},
        ).all()
        cards = (
            conn.execute(select(Job.card_id).where(Job.card_id.like("card-%")).distinct().limit(50))
            .scalars()
            .all()
        )
    random.shuffle(rows)
    # Deep cursors: rows from anywhere in the table, most of them far from the newest.
    cursors = [pages.encode_cursor({"created_at": r.created_at, "id": r.id}) for r in rows]
    return {"ids": [str(r.id) for r in rows], "cursors": cursors, "cards": cards}


def calls(s: dict) -> dict:
    """Name -> (path maker, service call maker) of every timed call; `i` picks the sample."""
    ids, cursors, cards = s["ids"], s["cursors"], s["cards"]

    def pick(seq, i):
        return seq[i % len(seq)]

    def listing(extra):
        return lambda i: (
            "/api/v1/jobs?limit=50" + "".join(f"&{k}={v(i)}" for k, v in extra.items()),
            lambda t: jobs.list_jobs(
                t,
                {k: v(i) for k, v in extra.items() if k != "cursor"},
                50,
                extra["cursor"](i) if "cursor" in extra else None,
            ),
        )

    return {
        "GET /jobs/{id}": lambda i: (
            f"/api/v1/jobs/{pick(ids, i)}",
            lambda t: jobs.get(t, pick(ids, i)),
        ),
        "list, first page": listing({}),
        "list, deep cursor": listing({"cursor": lambda i: pick(cursors, i)}),
        "list, status=failed, deep cursor": listing(
            {"status": lambda i: "failed", "cursor": lambda i: pick(cursors, i)}
        ),
        "list, status=queued (rare)": listing({"status": lambda i: "queued"}),
        "list, kind=fail (rare)": listing({"kind": lambda i: "fail"}),
        "list, card_id": listing({"card_id": lambda i: pick(cards, i)}),
        "events since=2": lambda i: (
            f"/api/v1/jobs/{pick(ids, i)}/events?since=2",
            lambda t: jobs.job_events(t, pick(ids, i), 2),
        ),
        # A Prometheus scrape: several reads (Postgres, Redis, the broker), not one query, so
        # it is timed over HTTP only (no service call to explain).
        "GET /metrics": lambda i: ("/metrics", None),
    }


def time_calls(o: orchestra.Orchestra, s: dict, n: int) -> dict:
    """p50/p99 of each call over HTTP (one keep-alive session), `n` times each.

    The calls take turns (one of each, then again), so a stall of the shared machine
    hits every call alike instead of all the samples of one.
    """
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {o.secret}"
    makers = calls(s)
    samples: dict[str, list[float]] = {name: [] for name in makers}
    for i in range(n + 5):
        for name, make in makers.items():
            path, _ = make(i)
            t0 = time.perf_counter()
            resp = session.get(orchestra.api_url(o, path), timeout=30)
            elapsed = time.perf_counter() - t0
            if resp.status_code != 200:
                raise RuntimeError(f"{path} answered {resp.status_code}: {resp.text[:300]}")
            if i >= 5:  # the first rounds warm the connections and the plan cache
                samples[name].append(elapsed)
    session.close()
    return {name: latency_stats(v) for name, v in samples.items()}


@contextmanager
def _captured():
    """The SQL statements this process sends to Postgres meanwhile, with their parameters."""
    seen: list[tuple[str, object]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _statement(o: orchestra.Orchestra, service) -> tuple[str, object]:
    """The last SQL statement `service` sends (the read itself) and its parameters."""
    with _captured() as seen:
        service(o.tenant)
    return seen[-1]


def _explain(statement: str, params) -> str:
    raw = db.engine().raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        return "\n".join(r[0] for r in cur.fetchall())
    finally:
        raw.close()


def _execution_ms(plan: str) -> float:
    line = next(x for x in plan.splitlines() if x.startswith("Execution Time:"))
    return float(line.split()[2])


def explain(o: orchestra.Orchestra, s: dict, n: int = 30) -> tuple[dict, dict]:
    """Each call's query, made as the route makes it, under EXPLAIN (ANALYZE, BUFFERS):
    one plan per call, and the database's execution time over `n` different samples."""
    plans, in_db = {}, {}
    for name, make in calls(s).items():
        if make(0)[1] is None:
            continue
        times = []
        for i in range(n):
            plan = _explain(*_statement(o, make(i)[1]))
            times.append(_execution_ms(plan) / 1000)
        plans[name] = plan
        in_db[name] = latency_stats(times)
    return plans, in_db


def count_for_metrics() -> float:
    """Seconds the sweep's count of jobs and commands by status takes (what `/metrics`
    then reads from Redis); run before timing, so the scrapes read real counts."""
    t0 = time.perf_counter()
    telemetry.refresh_counts(0.001, force=True)
    return time.perf_counter() - t0


def run(settings: Settings, small: int, large: int, n: int) -> dict:
    """Time every call with `small` jobs, fill to `large`, time again, explain each query."""
    o = orchestra.connect(settings)
    api = procs.start("large-api", procs.read_procfile()["api"], procs.child_env(settings))
    try:
        orchestra.wait_api_ready(o, api)
        t0 = time.perf_counter()
        fill.fill(o.tenant.id, o.tenant.name, small, f"{TAG}{uuid.uuid4().hex[:6]}-")
        log(f"large: {small} jobs; timing the calls")
        s = _sample(o)
        counted_small = count_for_metrics()
        before = time_calls(o, s, n)
        _, before_db = explain(o, s)
        t1 = time.perf_counter()
        fill.fill(o.tenant.id, o.tenant.name, large - small, f"{TAG}{uuid.uuid4().hex[:6]}-", small)
        fill_s = time.perf_counter() - t1
        sizes = _sizes()
        log(f"large: filled to {sizes['jobs']} jobs, {sizes['events']} events in {fill_s:.0f} s")
        s = _sample(o)
        counted_large = count_for_metrics()
        log(f"large: the sweep's count for /metrics took {counted_large * 1000:.0f} ms")
        after = time_calls(o, s, n)
        plans, after_db = explain(o, s)
        log(f"large: done in {time.perf_counter() - t0:.0f} s")
    finally:
        procs.stop(api)
        orchestra.close(o)
    return {
        "small": before,
        "large": after,
        "small_in_db": before_db,
        "large_in_db": after_db,
        "sizes": sizes,
        "fill_s": fill_s,
        "counts_s": {"small": counted_small, "large": counted_large},
        "plans": plans,
    }


def _sizes() -> dict:
    with db.transaction() as conn:
        return {
            "jobs": conn.execute(text("SELECT count(*) FROM jobs")).scalar_one(),
            "events": conn.execute(text("SELECT count(*) FROM events")).scalar_one(),
            "db_bytes": conn.execute(
                text("SELECT pg_database_size(current_database())")
            ).scalar_one(),
        }

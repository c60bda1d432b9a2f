"""The batch route: how many jobs/s the real api process accepts, and how fast the backlog drains.

1. accept: one HTTP client POSTs batches of 1,000 echo jobs to `/api/v1/jobs/batch`, back to
   back, for `seconds`, against the Procfile's api (gunicorn) with no worker running; the
   figure is jobs answered 202 per second of the client's wall clock.
2. drain: then the Procfile's worker (`-c 2`, as the other sections) starts on that backlog;
   the figure is the jobs over the span from the first run's start to the last one's end,
   read from Postgres (`started_at`, `finished_at`), so the worker's boot is not counted.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack

import requests
from sqlalchemy import func, select

from app import db
from app.config import Settings
from app.models import Job
from bench import orchestra, procs
from bench.measure import wait_until
from bench.sandbox import log

BATCH = 1000


def _body(card: str, start: int, **fields) -> dict:
    return {"jobs": [{"kind": "echo", "params": {"i": start + i}, "card_id": card, **fields}
                     for i in range(BATCH)]}


def accept(o: orchestra.Orchestra, card: str, seconds: float) -> dict:
    """Phase 1: batches back to back from one client; jobs accepted per second."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {o.secret}"
    url = orchestra.api_url(o, "/api/v1/jobs/batch")
    # Warm the api's pools and imports: not counted, and due in a day, so not in the backlog.
    for _ in range(2):
        warm = _body(f"{card}-warm", 0, countdown_s=86400)
        session.post(url, json=warm, timeout=60).raise_for_status()
    accepted, latencies = 0, []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        resp = session.post(url, json=_body(card, accepted), timeout=60)
        resp.raise_for_status()
        latencies.append(time.perf_counter() - t)
        accepted += len(resp.json()["items"])
    elapsed = time.perf_counter() - start
    session.close()
    return {"jobs": accepted, "seconds": elapsed, "per_s": accepted / elapsed,
            "batch_ms_median": sorted(latencies)[len(latencies) // 2] * 1000}


def _progress(card: str) -> tuple[int, object, object]:
    q = select(func.count(), func.min(Job.started_at), func.max(Job.finished_at)).where(
        Job.card_id == card, Job.status == "completed"
    )
    with db.transaction() as conn:
        return tuple(conn.execute(q).one())


def drain(card: str, n: int, worker: procs.Proc, timeout_s: float) -> dict:
    """Phase 2: wait until the backlog is completed; jobs per second of the worker's span."""
    wait_until(lambda: _progress(card)[0] >= n, timeout_s, f"{n} batch jobs", check=worker.check)
    done, first, last = _progress(card)
    span = (last - first).total_seconds()
    return {"jobs": done, "seconds": span, "per_s": done / span if span else None}


def run(settings: Settings, seconds: float) -> dict:
    """One run of the section, on its own api and worker processes."""
    commands = procs.read_procfile()
    env = procs.child_env(settings)
    o = orchestra.connect(settings)
    card = f"batch-{uuid.uuid4().hex[:8]}"
    try:
        with ExitStack() as stack:
            api = procs.start("batch-api", commands["api"], env)
            stack.callback(procs.stop, api)
            orchestra.wait_api_ready(o, api)
            log(f"batch: one client posting {BATCH}-job batches for {seconds:g} s")
            accepted = accept(o, card, seconds)
            log(f"batch: {accepted['per_s']:.0f} jobs/s accepted ({accepted['jobs']} jobs); "
                "draining with the worker (-c 2)")
            worker = procs.start("batch-worker", f"{commands['worker']} -c 2", env)
            stack.callback(procs.stop, worker)
            drained = drain(card, accepted["jobs"], worker, 120 + accepted["jobs"] / 50)
            log(f"batch: drained at {drained['per_s']:.0f} jobs/s")
        orchestra.remove_jobs(Job.card_id == card)
    finally:
        orchestra.close(o)
    return {"accept": accepted, "drain": drained, "batch_size": BATCH}

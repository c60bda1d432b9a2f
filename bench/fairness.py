"""Noisy neighbour: tenant A's backlog beside tenant B's trickle, fair, unfair and raw Celery.

Tenant A submits `a_jobs` sleep jobs of 0.2 s at once (batches of 500); then tenant B submits
one every 0.2 s until A's backlog is done. The same worker runs each system: a threads pool
of `slots` (the jobs sleep, so slots, not the two CPUs, are what they share). Three runs:

- fair: Orchestra as it ships (SCHEDULER_AHEAD admitted jobs at most ahead of a free slot);
- unfair: Orchestra with the scheduler out of the way (no ahead budget, no tenant limit), so
  every job goes to the broker when it is made: one FIFO queue, as before the scheduler;
- raw: raw Celery, the same jobs sent to one queue in the same order.

Figures: B's queue wait (its jobs' start minus their submission) p50/p99, and A's throughput
(its jobs over the span from its first submission to its last end). Then the admission
pass's own cost per dispatched job: a backlog of many tenants, one slot freed per pass.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import redis
from sqlalchemy import func, select, text

from app import batches, bootstrap, db, jobs, tenants
from app.config import Settings
from app.models import Job
from bench import noop, procs
from bench.measure import latency_stats, wait_until
from bench.peers.method import delta, pids_cpu, tree_cpu
from bench.sandbox import log

JOB_S = 0.2
B_EVERY_S = 0.2
BATCH = 500
SLEEP = {"kind": "sleep", "params": {"seconds": JOB_S, "steps": 1}}
ORCHESTRA_WORKER = ("celery -A workers --quiet worker -Q jobs -n fair-$$@%h "
                    "--pool threads -c {slots} --loglevel INFO")
RAW_WORKER = (f"celery -A bench.noop worker -Q {noop.QUEUE} -n fifo-$$@%h "
              "--pool threads -c {slots} --loglevel INFO")
UNFAIR = {"scheduler_ahead": 10_000, "tenant_max_running": 10**7}


def _trickle(submit, stop: threading.Event) -> int:
    """Call `submit()` every B_EVERY_S until `stop`; how many times it was called."""
    n, next_at = 0, time.perf_counter()
    while not stop.is_set():
        submit()
        n += 1
        next_at += B_EVERY_S
        stop.wait(max(0.0, next_at - time.perf_counter()))
    return n


def _figures(a_span: tuple[float, float, int], b_waits: list[float]) -> dict:
    first, last, n = a_span
    return {"a_jobs": n, "a_per_s": n / (last - first), "a_seconds": last - first,
            "b_wait": latency_stats(b_waits)}


# -- Orchestra ------------------------------------------------------------------------------


def _count_done(tenant_id) -> int:
    q = select(func.count()).where(Job.tenant_id == tenant_id, Job.status == "completed")
    with db.transaction() as conn:
        return conn.execute(q).scalar_one()


def _bad(tenant_ids) -> None:
    q = select(func.count()).where(Job.tenant_id.in_(tenant_ids),
                                   Job.status.in_(("failed", "cancelled")))
    with db.transaction() as conn:
        if bad := conn.execute(q).scalar_one():
            raise RuntimeError(f"{bad} noisy-neighbour jobs ended badly")


def _orchestra_readings(a, b, since) -> tuple[tuple[float, float, int], list[float]]:
    """A's (first submission, last end, count) and B's waits, from the rows' timestamps."""
    with db.transaction() as conn:
        first, last, n = conn.execute(
            select(func.extract("epoch", func.min(Job.created_at)),
                   func.extract("epoch", func.max(Job.finished_at)), func.count())
            .where(Job.tenant_id == a.id, Job.created_at >= since)).one()
        waits = conn.execute(
            select(func.extract("epoch", Job.started_at - Job.created_at))
            .where(Job.tenant_id == b.id, Job.created_at >= since)).scalars().all()
    return (float(first), float(last), n), [float(w) for w in waits]


def _cpu(worker: procs.Proc) -> dict:
    """CPU seconds so far of the worker (and its children), of the run database's backends
    and of this process (the submitters, and the admission passes after a submit)."""
    return {"worker": tree_cpu([worker.popen.pid]), "postgres": pids_cpu(_backends()),
            "bench": time.process_time()}


def _cpu_per_job(before: dict, after: dict, jobs_n: int) -> dict:
    spent = {"worker": after["worker"] - before["worker"],
             "postgres": delta(before["postgres"], after["postgres"]),
             "bench": after["bench"] - before["bench"]}
    return {f"{k}_ms": v * 1000 / jobs_n for k, v in spent.items()}


def orchestra_run(settings: Settings, label: str, a_jobs: int, slots: int) -> dict:
    """One Orchestra run (`label` fair or unfair) on its own worker and tenants."""
    from workers import make_celery

    bootstrap.init(settings, sender=make_celery(settings).send_task)
    tag = uuid.uuid4().hex[:6]
    a = tenants.authenticate(tenants.create_key(f"noisy-{label}-{tag}"))
    b = tenants.authenticate(tenants.create_key(f"quiet-{label}-{tag}"))
    worker = procs.start(f"fairness-{label}", ORCHESTRA_WORKER.format(slots=slots),
                         procs.child_env(settings))
    try:
        warm, _ = jobs.submit(b, {"kind": "echo", "params": {}})  # waits for the worker's boot
        wait_until(lambda: jobs.get(b, warm.id).status == "completed", 60, "warm-up",
                   check=worker.check)
        since = jobs.get(b, warm.id).finished_at
        log(f"fairness {label}: tenant A submits {a_jobs} jobs of {JOB_S} s, "
            f"B one every {B_EVERY_S} s ({slots} slots)")
        cpu0 = _cpu(worker)
        for start in range(0, a_jobs, BATCH):
            batches.submit_batch(a, [SLEEP] * min(BATCH, a_jobs - start))
        stop = threading.Event()
        trickle = threading.Thread(target=lambda: _trickle(lambda: jobs.submit(b, SLEEP), stop))
        trickle.start()
        try:
            wait_until(lambda: _count_done(a.id) >= a_jobs, 120 + a_jobs * JOB_S,
                       f"tenant A's {a_jobs} jobs", check=worker.check)
        finally:
            stop.set()
            trickle.join()
        with db.transaction() as conn:
            b_jobs = conn.execute(select(func.count()).where(Job.tenant_id == b.id)).scalar_one()
        wait_until(lambda: _count_done(b.id) >= b_jobs, 60, "tenant B's jobs",
                   check=worker.check)
        cpu = _cpu_per_job(cpu0, _cpu(worker), a_jobs + b_jobs)
        _bad([a.id, b.id])
        a_span, b_waits = _orchestra_readings(a, b, since)
    finally:
        procs.stop(worker)
    return {**_figures(a_span, b_waits), "cpu": cpu}


def admission_cost(settings: Settings, tenants_n: int = 10, backlog: int = 2000,
                   passes: int = 300) -> dict:
    """The admission pass alone: `backlog` waiting jobs of `tenants_n` tenants, no worker;
    each round ends one admitted job (an UPDATE) and runs `jobs.admit()`, which admits the
    one job the freed budget allows. The CPU of rounds without the pass is subtracted."""
    from workers import make_celery

    bootstrap.init(settings.with_(scheduler_ahead=1), sender=make_celery(settings).send_task)
    refs = [tenants.authenticate(tenants.create_key(f"admit-{uuid.uuid4().hex[:6]}"))
            for _ in range(tenants_n)]
    for ref in refs:
        batches.submit_batch(ref, [SLEEP] * (backlog // tenants_n))
    ids = [r.id for r in refs]
    end_one = text("UPDATE jobs SET status = 'completed', finished_at = now() "
                   "WHERE admitted_at IS NOT NULL AND status = 'queued' AND tenant_id = ANY(:t)")

    def rounds(with_pass: bool) -> tuple[float, float, float, list[float]]:
        backends = _backends()
        pg0, cpu0, t0 = pids_cpu(backends), time.process_time(), time.perf_counter()
        walls = []
        for _ in range(passes):
            with db.transaction() as conn:
                conn.execute(end_one, {"t": ids})
            if with_pass:
                t = time.perf_counter()
                jobs.admit()
                walls.append(time.perf_counter() - t)
        return (time.perf_counter() - t0, time.process_time() - cpu0,
                delta(pg0, pids_cpu(_backends() + backends)), walls)

    jobs.admit()  # the first admitted job, and warm pools
    wall, client, pg, walls = rounds(True)
    _, client0, pg0, _ = rounds(False)
    with db.transaction() as conn:
        admitted = conn.execute(select(func.count()).where(
            Job.tenant_id.in_(ids), Job.admitted_at.is_not(None))).scalar_one()
    redis.Redis.from_url(settings.redis_url).delete("jobs")  # nobody runs what was sent
    return {"passes": passes, "backlog": backlog, "tenants": tenants_n, "admitted": admitted,
            "pass": latency_stats(walls),
            "client_ms": (client - client0) * 1000 / passes,
            "postgres_ms": (pg - pg0) * 1000 / passes, "wall_s": wall}


def _backends() -> list[int]:
    with db.transaction() as conn:
        return list(conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars())


# -- raw Celery -----------------------------------------------------------------------------


def raw_run(settings: Settings, a_jobs: int, slots: int) -> dict:
    """The same scenario on raw Celery: one queue, first in first out."""
    producer = noop.make_app(settings.redis_url)
    r = redis.Redis.from_url(settings.redis_url)
    out = f"bench:fifo:{uuid.uuid4().hex}"
    worker = procs.start("fairness-raw", RAW_WORKER.format(slots=slots),
                         procs.child_env(settings))

    def send(tag: str) -> None:
        producer.send_task(noop.SLEEP_TASK, args=[out, tag, time.time(), JOB_S], queue=noop.QUEUE)

    try:
        send("warm")
        wait_until(lambda: r.llen(out) >= 1, 60, "warm-up", check=worker.check)
        r.delete(out)
        log(f"fairness raw: A sends {a_jobs} tasks, B one every {B_EVERY_S} s (one FIFO queue)")
        for _ in range(a_jobs):
            send("a")
        stop = threading.Event()
        count = {}
        trickle = threading.Thread(target=lambda: count.update(b=_trickle(lambda: send("b"),
                                                                          stop)))
        trickle.start()
        try:
            wait_until(lambda: r.llen(out) >= a_jobs, 120 + a_jobs * JOB_S, "A's tasks",
                       check=worker.check)
        finally:
            stop.set()
            trickle.join()
        wait_until(lambda: r.llen(out) >= a_jobs + count["b"], 60 + count["b"] * JOB_S,
                   "B's tasks", check=worker.check)
        runs = [json.loads(x) for x in r.lrange(out, 0, -1)]
    finally:
        procs.stop(worker)
        r.delete(out, noop.QUEUE)
        producer.close()
    a_runs = [x for x in runs if x[0] == "a"]
    a_span = (min(x[1] for x in a_runs), max(x[3] for x in a_runs), len(a_runs))
    return _figures(a_span, [x[2] - x[1] for x in runs if x[0] == "b"])


def run(settings: Settings, a_jobs: int, slots: int) -> dict:
    """The three runs and the admission pass's cost."""
    fair = orchestra_run(settings, "fair", a_jobs, slots)
    unfair = orchestra_run(settings.with_(**UNFAIR), "unfair", a_jobs, slots)
    raw = raw_run(settings, a_jobs, slots)
    cost = admission_cost(settings)
    bootstrap.init(settings)  # the next section's wiring is its own
    for name, f in (("fair", fair), ("unfair", unfair), ("raw", raw)):
        log(f"fairness {name}: B waits p50 {f['b_wait']['p50_ms']:.0f} ms, "
            f"p99 {f['b_wait']['p99_ms']:.0f} ms; A {f['a_per_s']:.1f} jobs/s")
    log(f"admission: {cost['pass']['p50_ms']:.2f} ms a pass (p50), "
        f"{cost['client_ms']:.2f} ms client + {cost['postgres_ms']:.2f} ms Postgres CPU a job")
    return {"fair": fair, "unfair": unfair, "raw": raw, "admission": cost,
            "slots": slots, "job_s": JOB_S, "b_every_s": B_EVERY_S}

"""Orchestra end to end: HTTP submits -> `completed` in Postgres -> the Socket.IO `tenant` room.

The Procfile's api, worker (`-c 2`, as the baseline's), relay and beat run as in
production. Phases of one repetition:

1. sustained: several HTTP clients submit echo jobs back to back (at most `window`
   unfinished), and throughput is the `completed` events the listener received per second
   over the steady part of the window;
2. half rate: an open-loop arrival rate of half that throughput; submit latency and status
   latency (receive time minus the event's `created_at`, read from Postgres to the
   microsecond; it is taken in the worker's transaction just before its commit, so the
   figure includes the commit itself);
3. idle: one job at a time, submit -> `completed` received, beside raw Celery's round trip.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field

import psycopg
import redis
from sqlalchemy import select

from app import db, pubsub
from app.config import Settings
from app.models import Event
from bench import clients, orchestra, procs
from bench.measure import latency_stats
from bench.peers.method import delta, libpq_url, per_job_ms, pids_cpu, tree_cpu
from bench.sandbox import log

SPAWN = mp.get_context("spawn")
SUBMITTERS = 4
WINDOW = 100
SETTLE_S = 3.0  # the first seconds of the sustained phase are not counted (pools warm up)


@dataclass
class Listener:
    """The Socket.IO listener process and what it has reported so far."""

    proc: object
    queue: object
    stop: object
    received: object  # a shared counter the closed-loop submitters read
    seen: dict = field(default_factory=dict)  # job_id -> (event_id, status, received_at)
    at_redis: dict = field(default_factory=dict)  # event_id -> when it reached Redis
    lock: threading.Lock = field(default_factory=threading.Lock)
    drainer: threading.Thread | None = None
    closing: bool = False

    def drain(self) -> None:
        """Move the listener's reports into `seen` (a thread of the bench process)."""
        while not self.closing:
            try:
                source, event_id, job_id, status, at = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if source == "redis":
                with self.lock:
                    self.at_redis[event_id] = at
                continue
            with self.lock:
                self.seen[job_id] = (event_id, status, at)
            with self.received.get_lock():
                self.received.value += 1

    def wait_for(self, job_ids, timeout_s: float) -> None:
        """Wait until every job of `job_ids` was reported finished."""
        deadline = time.time() + timeout_s
        while True:
            with self.lock:
                missing = [j for j in job_ids if j not in self.seen]
            if not missing:
                return
            if time.time() > deadline or not self.proc.is_alive():
                raise TimeoutError(f"{len(missing)} jobs not reported finished")
            time.sleep(0.005)


def start_listener(target: clients.Target) -> Listener:
    """The listener process, subscribed before this returns."""
    out, ready, stop = SPAWN.Queue(), SPAWN.Event(), SPAWN.Event()
    proc = SPAWN.Process(target=clients.listen, args=(target, out, ready, stop), daemon=True)
    proc.start()
    if not ready.wait(60):
        proc.terminate()
        raise RuntimeError("the Socket.IO listener did not subscribe within 60 s")
    listener = Listener(proc, out, stop, SPAWN.Value("i", 0))
    listener.drainer = threading.Thread(target=listener.drain, daemon=True)
    listener.drainer.start()
    return listener


def stop_listener(listener: Listener) -> None:
    """Stop the listener process and its drain thread."""
    listener.stop.set()
    listener.proc.join(10)
    if listener.proc.is_alive():
        listener.proc.terminate()
        listener.proc.join(5)
    listener.closing = True
    listener.drainer.join(5)


def _shot() -> tuple:
    """What submitters wait on: a count of those up, the starting shot, the shared end time.

    Spawned processes take seconds to boot on a loaded machine: the clock starts when
    all of them are up, not when they were asked for.
    """
    return SPAWN.Semaphore(0), SPAWN.Event(), SPAWN.Value("d", 0.0)


def _fire(workers, shot: tuple, duration_s: float) -> float:
    """Start the processes; once all are up, set the end time and fire; the end time."""
    ready, go, until = shot
    for w in workers:
        w.start()
    for _ in workers:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a submitter process did not start within 120 s")
    until.value = time.time() + duration_s
    go.set()
    return until.value


def _gather(workers, out, timeout_s: float, cpu: dict | None = None) -> list[tuple]:
    """The samples of each submitter process, once they all ended; their CPU seconds are
    added to `cpu["clients"]` when `cpu` is given."""
    samples = []
    for _ in workers:
        mine, cpu_s = out.get(timeout=timeout_s)
        samples.extend(mine)
        if cpu is not None:
            cpu["clients"] = cpu.get("clients", 0.0) + cpu_s
    for w in workers:
        w.join(10)
    return samples


def cpu_reading(procs_by_name: dict, listener: Listener, pg, redis_url: str) -> dict:
    """CPU seconds so far of each process of the stack (with its children), of the Postgres
    backends of the run's database and of the Redis server, and of the listener."""
    with pg.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        backends = [r[0] for r in cur.fetchall()]
    reading = {name: tree_cpu([p.popen.pid]) for name, p in procs_by_name.items()}
    reading["postgres"] = pids_cpu(backends)
    reading["redis"] = pids_cpu([int(redis.Redis.from_url(redis_url).info()["process_id"])])
    reading["listener"] = tree_cpu([listener.proc.pid])
    return reading


def cpu_per_job(before: dict, after: dict, clients_s: float, jobs: int) -> dict:
    """CPU ms per job of each process between two readings (the submitters' own count)."""
    out = {}
    for name, value in after.items():
        spent = delta(before[name], value) if isinstance(value, dict) else value - before[name]
        out[name] = per_job_ms(spent, jobs)
    out["clients"] = per_job_ms(clients_s, jobs) + (out.pop("listener") or 0.0)
    out["total"] = sum(v for k, v in out.items() if v is not None)
    return out


def sustained(
    target, listener: Listener, duration_s: float, meter=None
) -> tuple[dict, list[tuple]]:
    """Phase 1: closed-loop submitters for `duration_s`; completions/s over the steady part.

    `meter()` reads every process's CPU: read before the shot and once every job submitted
    is reported finished, the difference per job is in the answer's `cpu_ms_per_job`.
    """
    out, submitted = SPAWN.Queue(), SPAWN.Value("i", 0)
    with listener.received.get_lock():
        listener.received.value = 0
    shot = _shot()
    args = (target, shot, WINDOW, submitted, listener.received, out)
    workers = [SPAWN.Process(target=clients.submit_closed, args=args) for _ in range(SUBMITTERS)]
    cpu: dict = {}
    before = meter() if meter else None
    until = _fire(workers, shot, duration_s)
    samples = _gather(workers, out, duration_s + 120, cpu)
    listener.wait_for([s[0] for s in samples], 120)
    after = meter() if meter else None
    # The clients boot for a second or so: the steady window starts after they submit.
    first = min(s[1] for s in samples)
    lo, hi = first + SETTLE_S, until
    with listener.lock:
        n = sum(1 for j, _, _ in samples if lo <= listener.seen[j][2] <= hi)
    tp = {"per_s": n / (hi - lo), "n": n, "seconds": hi - lo}
    if meter:
        tp["cpu_ms_per_job"] = cpu_per_job(before, after, cpu.get("clients", 0.0), len(samples))
    return tp, samples


def half_rate(target, listener: Listener, rate: float, duration_s: float) -> list[tuple]:
    """Phase 2: open-loop arrivals at `rate` jobs/s over `duration_s`; the submit samples."""
    out = SPAWN.Queue()
    interval, shot = SUBMITTERS / rate, _shot()
    workers = [
        SPAWN.Process(
            target=clients.submit_open,
            args=(target, shot, k * interval / SUBMITTERS, interval, out),
        )
        for k in range(SUBMITTERS)
    ]
    _fire(workers, shot, duration_s)
    samples = _gather(workers, out, duration_s + 120)
    listener.wait_for([s[0] for s in samples], 120)
    return samples


def idle(o: orchestra.Orchestra, listener: Listener, n: int) -> list[float]:
    """Phase 3: `n` jobs one at a time, from before the POST to the `completed` received."""
    session = clients.open_session(clients.Target(orchestra.api_url(o, ""), "", o.secret))
    url = orchestra.api_url(o, "/api/v1/jobs")
    latencies = []
    for i in range(n):
        job_id, started, _ = clients.post_echo(session, url, i)
        listener.wait_for([job_id], 30)
        with listener.lock:
            latencies.append(listener.seen[job_id][2] - started)
    session.close()
    return latencies


def commit_times(event_ids: list[str]) -> dict[str, float]:
    """`created_at` of events, as epoch seconds (microseconds, unlike the envelope's ms)."""
    out = {}
    with db.transaction() as conn:
        for i in range(0, len(event_ids), 5000):
            chunk = [uuid.UUID(e) for e in event_ids[i : i + 5000]]
            rows = conn.execute(select(Event.id, Event.created_at).where(Event.id.in_(chunk)))
            out.update({str(r.id): r.created_at.timestamp() for r in rows})
    return out


def status_latencies(listener: Listener, samples: list[tuple]) -> tuple[dict, dict]:
    """job_id -> received_at minus the final event's `created_at`, for `samples`: at the
    Socket.IO client, and at a plain Redis subscriber (the part before the relay)."""
    with listener.lock:
        seen = {s[0]: listener.seen[s[0]] for s in samples}
        at_redis = dict(listener.at_redis)
    stamps = commit_times([event_id for event_id, _, _ in seen.values()])
    to_client = {job: at - stamps[event_id] for job, (event_id, _, at) in seen.items()}
    to_redis = {
        job: at_redis[event_id] - stamps[event_id]
        for job, (event_id, _, _) in seen.items()
        if event_id in at_redis
    }
    return to_client, to_redis


def series(listener: Listener, samples: list[tuple], status: dict, t0: float, phases) -> dict:
    """Per-second bins of the whole run, for the plot."""

    def q(values, p):
        if not values:
            return None
        return (
            statistics.quantiles(values, n=100, method="inclusive")[p - 1] * 1000
            if len(values) > 1
            else values[0] * 1000
        )

    with listener.lock:
        seen = dict(listener.seen)
    end = max(at for _, _, at in seen.values())
    bins = range(int(end - t0) + 1)
    done = [[] for _ in bins]
    subs = [[] for _ in bins]
    for job_id, started, latency in samples:
        subs[min(int(started - t0), len(bins) - 1)].append(latency)
        if job_id in seen:
            done[int(seen[job_id][2] - t0)].append(status.get(job_id))
    return {
        "t": list(bins),
        "completed_per_s": [len(d) for d in done],
        "submitted_per_s": [len(s) for s in subs],
        "status_p50_ms": [q([x for x in d if x is not None], 50) for d in done],
        "status_p99_ms": [q([x for x in d if x is not None], 99) for d in done],
        "submit_p50_ms": [q(s, 50) for s in subs],
        "phases": [(p - t0, label) for p, label in phases],
    }


def run(settings: Settings, durations: dict, idle_n: int) -> dict:
    """One repetition of the end-to-end section, on a fresh set of processes."""
    commands = procs.read_procfile()
    env = procs.child_env(settings)
    o = orchestra.connect(settings)
    try:
        with ExitStack() as stack:
            started = {}
            for name, command in (
                ("api", commands["api"]),
                ("worker", f"{commands['worker']} -c 2"),
                ("relay", commands["relay"]),
                ("system", commands["system"]),
                ("beat", commands["beat"]),
            ):
                started[name] = procs.start(f"e2e-{name}", command, env)
                stack.callback(procs.stop, started[name])
            orchestra.wait_api_ready(o, started["api"])
            target = clients.Target(
                orchestra.api_url(o, ""),
                f"http://127.0.0.1:{settings.relay_port}",
                o.secret,
                settings.redis_url,
                pubsub.channel(o.tenant.name),
            )
            listener = start_listener(target)
            stack.callback(stop_listener, listener)
            log("e2e: warm-up")
            idle(o, listener, 10)
            t0 = time.time()
            log(f"e2e: sustained, {SUBMITTERS} HTTP clients for {durations['sustained']} s")
            pg = psycopg.connect(libpq_url(settings.database_url))
            pg.autocommit = True
            stack.callback(pg.close)
            meter = lambda: cpu_reading(started, listener, pg, settings.redis_url)  # noqa: E731
            tp, s1 = sustained(target, listener, durations["sustained"], meter)
            t1 = time.time()
            rate = max(1.0, tp["per_s"] / 2)
            log(f"e2e: {tp['per_s']:.0f} jobs/s; half rate {rate:.0f}/s for {durations['half']} s")
            s2 = half_rate(target, listener, rate, durations["half"])
            t2 = time.time()
            log(f"e2e: idle, {idle_n} jobs one at a time")
            trips = idle(o, listener, idle_n)
            status, to_redis = status_latencies(listener, s1 + s2)
            half_status = [status[s[0]] for s in s2]
            half_redis = [to_redis[s[0]] for s in s2 if s[0] in to_redis]
            plot = series(
                listener, s1 + s2, status, t0, [(t0, "sustained"), (t1, "half rate"), (t2, "idle")]
            )
    finally:
        orchestra.close(o)
    return {
        "throughput": tp,
        "half_rate": rate,
        "submit_latency": latency_stats([s[2] for s in s2]),
        "submit_latency_saturated": latency_stats([s[2] for s in s1]),
        "status_latency": latency_stats(half_status),
        "status_latency_to_redis": latency_stats(half_redis),
        "status_latency_saturated": latency_stats([status[s[0]] for s in s1]),
        "idle_round_trip": latency_stats(trips),
        "series": plot,
    }

"""One method for every job system of the peers section (the issue's, item 1).

Per system and repetition: a fresh database and Redis db; N no-op jobs enqueued by the
system's client in a process of its own (half one by one, half in the library's bulk
call); then its two worker processes started on that backlog; the drain read from the
jobs' own timestamps (first start, or first finish where only that is kept, to last
finish); CPU of the worker processes and their children, and of the Postgres backends of
that database, from /proc over the drain; then idle round trips (one job at a time,
waited for the library's own way) while the workers still run. Everything is removed after.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import redis
from sqlalchemy.engine import make_url

from app.config import Settings
from bench import procs
from bench.measure import latency_stats
from bench.sandbox import REDIS_DBS, ROOT, log
from scripts import sandbox as resources

DB_PREFIX = "orchestra_peer_"
BULK_BATCH = 500
WARM = 5
# Reading progress costs the database a query: often enough to bound the figures' error,
# rarely enough to leave the drain to the workers (the poller's backend is not counted).
PROGRESS_POLL_S = 0.02
TICKS = os.sysconf("SC_CLK_TCK")
VENV_PYTHON = str(ROOT / ".venv" / "bin" / "python")


# -- the pure parts (tests/unit/test_peers_method.py) --------------------------------------


def parse_stat(line: str) -> tuple[int, float, float]:
    """(ppid, own CPU s, reaped children's CPU s) of one `/proc/<pid>/stat` line.

    The command name is in parentheses and may hold spaces or ')': fields are counted
    after its last ')'. utime, stime, cutime, cstime are fields 14-17, in clock ticks.
    """
    rest = line[line.rindex(")") + 2 :].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, (utime + stime) / TICKS, (cutime + cstime) / TICKS


def drain_rate(done: int, first: float, last: float, first_is_start: bool) -> dict:
    """Jobs/s from the jobs' own timestamps: `done` jobs from the first start to the last
    finish; where only finishes are kept, the first finish, which leaves one job out."""
    counted = done if first_is_start else done - 1
    seconds = float(last) - float(first)  # Postgres' epoch is a numeric
    return {"n": done, "seconds": seconds, "per_s": counted / seconds if seconds > 0 else None}


def per_job_ms(cpu_s: float, jobs: int) -> float | None:
    """CPU milliseconds per job."""
    return cpu_s * 1000 / jobs if jobs else None


# -- /proc ---------------------------------------------------------------------------------


def _stats() -> dict[int, tuple[int, float, float]]:
    """Every process's (ppid, own CPU, children's CPU), read now."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                out[int(entry.name)] = parse_stat(f.read())
        except (FileNotFoundError, ProcessLookupError):  # it exited while we read
            continue
    return out


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of `roots` and all their descendants, reaped ones included (the parents'
    cutime/cstime): a difference of two readings is the tree's CPU in between."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [p for p in roots if p in stats]
    while todo:
        pid = todo.pop()
        _, own, reaped = stats[pid]
        total += own + reaped
        todo.extend(children.get(pid, []))
    return total


def pids_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each of `pids` that still runs."""
    stats = _stats()
    return {p: stats[p][1] for p in pids if p in stats}


def delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two readings by the processes of the second (new ones from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# -- one system ----------------------------------------------------------------------------


@dataclass
class Ctx:
    """One system's resources: its database (libpq and SQLAlchemy URLs), its Redis db, the
    environment of its processes, and the harness' own connections to both."""

    name: str
    dsn: str
    database_url: str
    redis_url: str
    settings: Settings
    env: dict[str, str]
    pg: object = None
    redis: redis.Redis | None = None
    pg_pid: int = 0


@dataclass(frozen=True)
class Peer:
    """How the method runs one system."""

    key: str  # the module under bench/peers/, and the label of its processes
    label: str  # the report's name for it
    workers: Callable[[Ctx], list[str]]  # its worker processes' commands
    # (done, first start or finish, last finish as epoch seconds, first_is_start)
    progress: Callable[[Ctx], tuple[int, float | None, float | None, bool]]
    setup: Callable[[Ctx], None] | None = None  # its schema
    python: Callable[[], str] = lambda: VENV_PYTHON  # the interpreter of its client
    note: str = ""


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as libpq reads it (psycopg 3, asyncpg, Oban)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def sql_one(ctx: Ctx, query: str) -> tuple:
    """One row of `query` on the system's database (the harness' connection)."""
    with ctx.pg.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()


@contextmanager
def resources_for(peer: Peer, base: Settings) -> Iterator[Ctx]:
    """A fresh database and Redis db for `peer`, its schema installed; removed on exit."""
    name = DB_PREFIX + peer.key.strip("_") + "_" + secrets.token_hex(3)
    database_url = resources.create_database(base.database_url, name)
    try:
        redis_url = resources.claim_redis_db(base.redis_url, name, REDIS_DBS)
        try:
            settings = base.with_(
                database_url=database_url, redis_url=redis_url, broker_url="", channel_prefix=name
            )
            env = procs.child_env(settings)
            env.update(
                PEER_DSN=libpq_url(database_url),
                PEER_DATABASE_URL=database_url,
                PEER_REDIS=redis_url,
                OBAN_DSN=libpq_url(database_url),
                PYTHONPATH=str(ROOT),
            )
            ctx = Ctx(name, libpq_url(database_url), database_url, redis_url, settings, env)
            if peer.setup:
                peer.setup(ctx)
            ctx.pg = psycopg.connect(ctx.dsn)
            ctx.pg.autocommit = True
            ctx.pg_pid = sql_one(ctx, "SELECT pg_backend_pid()")[0]
            ctx.redis = redis.Redis.from_url(redis_url)
            try:
                yield ctx
            finally:
                ctx.pg.close()
                ctx.redis.close()
        finally:
            resources.release_redis_db(redis_url, name)
    finally:
        resources.drop_database(database_url)


def drive(peer: Peer, ctx: Ctx, *args: object, timeout_s: float = 600) -> dict:
    """Run the system's client (`python -m bench.peers.<key> ...`); its JSON answer."""
    cmd = [peer.python(), "-m", f"bench.peers.{peer.key}", *map(str, args)]
    out = subprocess.run(
        cmd, cwd=ROOT, env=ctx.env, capture_output=True, text=True, timeout=timeout_s
    )
    if out.returncode != 0:
        raise RuntimeError(f"{peer.key} {args[0]} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def backends(ctx: Ctx) -> list[int]:
    """Pids of the Postgres backends on the system's database, the harness' own left out."""
    with ctx.pg.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s",
            (ctx.pg_pid,),
        )
        return [r[0] for r in cur.fetchall()]


def redis_pid(ctx: Ctx) -> int:
    return int(ctx.redis.info("server")["process_id"])


def _wait(peer: Peer, ctx: Ctx, workers, at_least: int, timeout_s: float) -> tuple:
    deadline = time.monotonic() + timeout_s
    while True:
        progress = peer.progress(ctx)
        if progress[0] >= at_least:
            return progress
        for w in workers:
            w.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{peer.key}: {progress[0]}/{at_least} jobs done")
        time.sleep(PROGRESS_POLL_S)


def drain(peer: Peer, ctx: Ctx, workers, n: int) -> dict:
    """Wait for the backlog's `n` jobs; the drain rate and CPU per job over it.

    CPU is read from the first job done on (the workers' boot, imports and connections,
    is not a job's cost) to the last, and divided by the jobs done in between.
    """
    pids = [w.popen.pid for w in workers]
    first = _wait(peer, ctx, workers, 1, 120)
    w0, p0, r0 = tree_cpu(pids), pids_cpu(backends(ctx)), pids_cpu([redis_pid(ctx)])
    done0 = first[0]
    last = _wait(peer, ctx, workers, n, 120 + n / 20)
    w1, p1, r1 = tree_cpu(pids), pids_cpu(backends(ctx)), pids_cpu([redis_pid(ctx)])
    jobs = last[0] - done0
    done, t_first, t_last, first_is_start = peer.progress(ctx)
    return {
        **drain_rate(done, t_first, t_last, first_is_start),
        "cpu_jobs": jobs,
        "worker_cpu_ms_per_job": per_job_ms(w1 - w0, jobs),
        "postgres_cpu_ms_per_job": per_job_ms(delta(p0, p1), jobs),
        "redis_cpu_ms_per_job": per_job_ms(delta(r0, r1), jobs),
    }


def run(peer: Peer, base: Settings, n: int, trips: int) -> dict:
    """One repetition of one system: enqueue, drain, idle round trips."""
    with resources_for(peer, base) as ctx:
        log(f"peers: {peer.label}: enqueue {n} jobs")
        single, bulk = n // 2, n - n // 2
        enq = drive(peer, ctx, "enqueue", single, bulk, BULK_BATCH)
        workers = []
        try:
            for i, command in enumerate(peer.workers(ctx)):
                workers.append(procs.start(f"peer-{peer.key.strip('_')}-{i}", command, ctx.env))
            drained = drain(peer, ctx, workers, n)
            log(f"peers: {peer.label}: {drained['per_s']:.0f} jobs/s; {trips} round trips")
            rt = drive(peer, ctx, "trips", trips, WARM)["trips_s"]
        finally:
            for w in workers:
                procs.stop(w)
    return {
        "enqueue_single_per_s": single / sum(enq["single_s"]),
        "enqueue_bulk_per_s": bulk / enq["bulk_s"],
        "client_cpu_ms_per_job_single": per_job_ms(enq["single_cpu_s"], single),
        "client_cpu_ms_per_job_bulk": per_job_ms(enq["bulk_cpu_s"], bulk),
        "drain": drained,
        "round_trip": latency_stats(rt),
    }

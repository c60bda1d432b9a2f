"""One relay process, thousands of Socket.IO clients, each in its own `job:<id>` room.

The jobs exist in Postgres (the relay checks a room's job at subscribe); events are
published on the tenant's Redis channel at a steady rate, as workers would, each to one
job's room, carrying its publish time. Delivery latency = arrival at the client minus that
time: Redis, the relay's routing and its WebSocket write, and the client's read.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import time
import uuid

import redis
from sqlalchemy import select

from app import db, pubsub
from app.config import Settings
from app.models import Job
from bench import fill, orchestra, procs, swarm
from bench.measure import latency_stats
from bench.sandbox import log

SPAWN = mp.get_context("spawn")
CLIENTS_PER_PROCESS = 1250


def _job_ids(o: orchestra.Orchestra, n: int) -> list[str]:
    tag = f"relay-{uuid.uuid4().hex[:8]}-"
    fill.fill(o.tenant.id, o.tenant.name, n, tag)
    with db.transaction() as conn:
        rows = conn.execute(select(Job.id).where(Job.correlation_id.like(tag + "%")))
        return [str(r) for r in rows.scalars()]


def _envelope(tenant: str, job_id: str, seq: int) -> str:
    env = {
        "event_id": str(uuid.uuid4()),
        "event_type": "job.progress.updated",
        "seq": seq,
        "timestamp": None,
        "source_service": "bench",
        "subject": {"type": "job", "id": job_id},
        "payload": {"job_id": job_id, "progress": 0.5, "sent_at": time.time()},
        "metadata": {"tenant": tenant, "correlation_id": None, "card_id": None, "version": "1.0"},
    }
    return json.dumps(env, separators=(",", ":"))


def publish(r: redis.Redis, tenant: str, job_ids: list[str], rate: float, seconds: float) -> int:
    """Publish `rate` events a second for `seconds`, round-robin over the jobs; the count."""
    channel, start, i = pubsub.channel(tenant), time.time(), 0
    first_seq = fill.EVENTS_PER_JOB + 1  # the fill stored seq 1..5 of each job
    while (due := start + i / rate) < start + seconds:
        time.sleep(max(0.0, due - time.time()))
        job = job_ids[i % len(job_ids)]
        r.publish(channel, _envelope(tenant, job, first_seq + i // len(job_ids)))
        i += 1
    return i


def next_report(q, workers, relay, timeout_s: float = 600):
    """The next report of a swarm process; raise early if one of them or the relay died."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            return q.get(timeout=1)
        except queue.Empty:
            relay.check()
            if dead := [w for w in workers if w.exitcode not in (None, 0)]:
                raise RuntimeError(f"a swarm process exited with {dead[0].exitcode}") from None
    raise TimeoutError("no report from the swarm processes")


def stop_swarm(stop, workers) -> None:
    """Tell the swarm processes to stop, and end those that do not within 30 s."""
    stop.set()
    for w in workers:
        w.join(30)
        if w.is_alive():
            w.terminate()


def run(settings: Settings, n_clients: int, rate: float, seconds: float) -> dict:
    """Connect `n_clients`, publish, and report connection and delivery figures."""
    o = orchestra.connect(settings)
    relay = procs.start("relay", procs.read_procfile()["relay"], procs.child_env(settings))
    workers, stop, out = [], SPAWN.Event(), SPAWN.Queue()
    try:
        ids = _job_ids(o, n_clients)
        url = f"http://127.0.0.1:{settings.relay_port}"
        ready = SPAWN.Queue()
        t0 = time.time()
        for k in range(0, n_clients, CLIENTS_PER_PROCESS):
            chunk = ids[k : k + CLIENTS_PER_PROCESS]
            w = SPAWN.Process(target=swarm.run, args=(url, o.secret, chunk, ready, stop, out))
            w.start()
            workers.append(w)
        connected, errors = 0, []
        for _ in workers:
            n, errs = next_report(ready, workers, relay)
            connected, errors = connected + n, errors + errs
        connect_s = time.time() - t0
        log(f"relay: {connected}/{n_clients} clients subscribed in {connect_s:.0f} s {errors}")
        sent = publish(o.redis, o.tenant.name, ids, rate, seconds)
        time.sleep(3)  # the last events arrive
        stop.set()
        delays = []
        for _ in workers:
            delays.extend(next_report(out, workers, relay, 60))
        relay.check()
    finally:
        stop_swarm(stop, workers)
        procs.stop(relay)
        orchestra.close(o)
    return {
        "clients": n_clients,
        "connected": connected,
        "connect_s": connect_s,
        "sent": sent,
        "received": len(delays),
        "rate": rate,
        "delivery": latency_stats(delays) if len(delays) > 1 else None,
    }

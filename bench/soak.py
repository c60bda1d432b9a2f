"""`python -m bench.soak`: thousands of jobs over HTTP while workers are killed, then count.

Several clients submit jobs to the real API while a chaos thread SIGKILLs a random worker
(and starts a fresh one) every few seconds; a Socket.IO client follows the tenant room.
At the end every job must have `completed` (the jobs cannot fail: a failure is a defect),
none completed twice, every job's event `seq` must run 1..n without a gap, and the follower
must have seen every event exactly once (checked once a marker job sent after everything was
published has reached it: anything extra would have come before it).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import requests
import socketio
from sqlalchemy import text

from app import bootstrap, db, tenants
from app.config import Settings
from scripts.stack import Stack, stack_env, wait_until

TERMINAL = ("completed", "failed", "cancelled")
STATUS_OF_MARKER = "completed"


@dataclass
class SoakReport:
    """What a soak did and what it found; `ok` when nothing was lost or doubled."""

    jobs: int = 0
    refused_then_retried: int = 0
    kills: int = 0
    restarts: int = 0
    by_status: dict = field(default_factory=dict)
    not_terminal: int = 0
    not_completed: int = 0
    missing_rows: int = 0
    completed_twice: int = 0
    seq_gaps: int = 0
    events: int = 0
    follower_missed: int = 0
    follower_duplicates: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.not_terminal
            or self.not_completed
            or self.missing_rows
            or self.completed_twice
            or self.seq_gaps
            or self.follower_missed
            or self.follower_duplicates
        )


class Follower:
    """A Socket.IO client in the `tenant` room, keeping `(subject id, seq)` of every event."""

    def __init__(self, url: str, secret: str):
        self.seen: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("event", self._on_event)
        self.sio.connect(url, auth={"token": secret}, transports=["websocket"], wait_timeout=10)
        ack = self.sio.call("subscribe", {"room": "tenant"}, timeout=10)
        if not ack.get("ok"):
            raise RuntimeError(f"subscribe refused: {ack}")

    def _on_event(self, env: dict) -> None:
        if env["subject"]["type"] == "job":
            with self._lock:
                self.seen.append((env["subject"]["id"], env["seq"]))

    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def has(self, subject_id: str, seq: int) -> bool:
        with self._lock:
            return (subject_id, seq) in self.seen


def _submit(base: str, secret: str, n: int, report: SoakReport, lock: threading.Lock) -> list:
    """One client: submit `n` jobs (mostly echo, some short sleeps), retrying refusals."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {secret}"
    ids = []
    for _ in range(n):
        if random.random() < 0.15:
            body = {"kind": "sleep", "params": {"seconds": random.uniform(0.2, 1.0), "steps": 2}}
        else:
            body = {"kind": "echo", "params": {"n": random.randrange(10**6)}}
        body["max_retries"] = 10
        while True:
            try:
                resp = http.post(
                    f"{base}/api/v1/jobs",
                    json=body,
                    timeout=10,
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
            except requests.RequestException:
                resp = None
            if resp is not None and resp.status_code == 202:
                ids.append(resp.json()["id"])
                break
            with lock:  # 429, 503 or a dropped connection: a client retries
                report.refused_then_retried += 1
            time.sleep(0.2)
    return ids


class Chaos(threading.Thread):
    """SIGKILLs a random worker every `every_s` and starts a fresh one in its place."""

    def __init__(self, stack: Stack, every_s: float, report: SoakReport):
        super().__init__(daemon=True, name="chaos")
        self.stack, self.every_s, self.report = stack, every_s, report
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every_s):
            alive = [p for p in self.stack.procs_named("worker") if p.alive()]
            if not alive:
                continue
            self.stack.kill(random.choice(alive))
            self.report.kills += 1
            self.stack.start("worker")
            self.report.restarts += 1

    def finish(self) -> None:
        """Stop killing, and wait until no replacement is being started any more."""
        self.halt.set()
        if self.is_alive():
            self.join(timeout=60)


_CHECKS = {
    "not_terminal": "SELECT count(*) FROM jobs WHERE tenant_id = :t "
    "AND status NOT IN ('completed', 'failed', 'cancelled')",
    "completed_twice": "SELECT count(*) FROM (SELECT subject_id FROM events WHERE tenant_id = :t "
    "AND event_type = 'job.status.updated' AND payload->>'status' = 'completed' "
    "GROUP BY subject_id HAVING count(*) > 1) x",
    "seq_gaps": "SELECT count(*) FROM (SELECT subject_id, count(*) n, min(seq) lo, max(seq) hi "
    "FROM events WHERE tenant_id = :t AND subject_type = 'job' GROUP BY subject_id) x "
    "WHERE lo <> 1 OR hi <> n",
    "events": "SELECT count(*) FROM events WHERE tenant_id = :t AND subject_type = 'job'",
    "unpublished": "SELECT count(*) FROM events WHERE tenant_id = :t AND published_at IS NULL",
}


def _count(name: str, tenant_id) -> int:
    with db.transaction() as conn:
        return conn.execute(text(_CHECKS[name]), {"t": tenant_id}).scalar_one()


def _stored_events(tenant_id) -> set[tuple[str, int]]:
    with db.transaction() as conn:
        rows = conn.execute(
            text(
                "SELECT subject_id, seq FROM events WHERE tenant_id = :t AND subject_type = 'job'"
            ),
            {"t": tenant_id},
        ).all()
    return {(str(r.subject_id), r.seq) for r in rows}


def _send_marker(base: str, secret: str, follower: Follower, tenant_id) -> str:
    """Once every event is published (none left for the sweep to send again), submit an
    `echo` job and wait for its completion (seq 3) at the follower: the relay forwards in
    order, so any duplicate it would still send of the soak's events has arrived. Its id."""
    wait_until(lambda: _count("unpublished", tenant_id) == 0, 60, 0.2, "the outbox to drain")
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"kind": "echo", "params": {"marker": True}}

    def submitted():
        resp = requests.post(f"{base}/api/v1/jobs", json=body, headers=headers, timeout=10)
        return resp.status_code == 202 and resp.json()["id"]

    marker = wait_until(submitted, 60, 0.2, "the marker job to be accepted")
    wait_until(lambda: follower.has(marker, 3), 60, 0.1, "the marker's completion")
    return marker


def _diagnose(settings: Settings, tenant_id) -> str:
    """What the jobs that did not end look like, and what the broker holds."""
    import redis

    with db.transaction() as conn:
        rows = conn.execute(
            text(
                "SELECT status, attempts, dispatched_at IS NOT NULL AS sent, "
                "run_after < now() AS due, now() - updated_at AS idle, worker "
                "FROM jobs WHERE tenant_id = :t "
                "AND status NOT IN ('completed', 'failed', 'cancelled') LIMIT 20"
            ),
            {"t": tenant_id},
        ).all()
    broker = redis.Redis.from_url(settings.effective_broker_url)
    keys = {k.decode(): broker.type(k).decode() for k in broker.keys("*")}
    sizes = {
        k: broker.llen(k)
        if t == "list"
        else broker.hlen(k)
        if t == "hash"
        else broker.zcard(k)
        if t == "zset"
        else broker.ttl(k)
        for k, t in keys.items()
        if not k.startswith(("_kombu.binding", "celery"))
    }
    return f"soak stuck: jobs {[tuple(r) for r in rows]}\nbroker {sizes}"


def run_soak(
    settings: Settings,
    tenant_name: str,
    jobs: int,
    clients: int = 8,
    workers: int = 3,
    kill_every_s: float = 5.0,
    log=print,
) -> SoakReport:
    """Run the soak on a fresh stack for `settings` (whose database is migrated)."""
    bootstrap.init(settings)
    secret = tenants.create_key(tenant_name)
    tenant = tenants.authenticate(secret)
    report, lock = SoakReport(jobs=jobs), threading.Lock()
    stack = Stack(stack_env(settings))
    chaos = Chaos(stack, kill_every_s, report)
    started = time.monotonic()
    try:
        api, relay = stack.start("api", API_WORKERS=2), stack.start("relay")
        for _ in range(workers):
            stack.start("worker")
        stack.start("system")
        stack.start("beat")
        stack.wait_http(api)
        stack.wait_http(relay)
        follower = Follower(stack.url(relay), secret)
        chaos.start()
        share = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
        with ThreadPoolExecutor(clients) as pool:
            batches = list(
                pool.map(lambda n: _submit(stack.url(api), secret, n, report, lock), share)
            )
        ids = {i for batch in batches for i in batch}
        log(f"{len(ids)} jobs accepted in {time.monotonic() - started:.1f}s; draining")
        try:
            wait_until(
                lambda: _count("not_terminal", tenant.id) == 0,
                max(120, jobs / 5),
                1.0,
                "every job to end",
            )
        except AssertionError:
            print(_diagnose(settings, tenant.id), file=sys.stderr)
            raise
        chaos.finish()
        stored = _stored_events(tenant.id)
        wait_until(lambda: follower.count() >= len(stored), 60, 0.5, "the follower to catch up")
        marker = _send_marker(stack.url(api), secret, follower, tenant.id)
        with db.transaction() as conn:
            report.by_status = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM jobs WHERE tenant_id = :t GROUP BY status"),
                    {"t": tenant.id},
                ).all()
            )
        report.by_status[STATUS_OF_MARKER] -= 1  # the marker is not the soak's
        report.missing_rows = len(ids) - sum(report.by_status.values())
        report.not_completed = len(ids) - report.by_status.get("completed", 0)
        for name in ("not_terminal", "completed_twice", "seq_gaps", "events"):
            setattr(report, name, _count(name, tenant.id))
        report.events -= 3  # the marker's: queued, processing, completed
        received = [seen for seen in follower.seen if seen[0] != marker]
        report.follower_missed = len(stored - set(received))
        report.follower_duplicates = len(received) - len(set(received))
        follower.sio.disconnect()
    except BaseException:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        chaos.finish()  # before stopping: a worker started after the stop would be orphaned
        stack.stop()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    from bench.sandbox import log, sandbox

    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--kill-every", type=float, default=5.0, help="seconds between worker kills")
    args = p.parse_args(argv)
    with sandbox() as settings:
        settings = settings.with_(
            worker_lost_redelivery_s=10.0, sweep_interval_s=0.5, rate_limit="1000000/minute"
        )
        report = run_soak(
            settings, "soak", args.jobs, args.clients, args.workers, args.kill_every, log=log
        )
    for name, value in asdict(report).items():
        print(f"{name:22} {value}")
    print(f"{'verdict':22} {'OK: nothing lost, nothing doubled' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

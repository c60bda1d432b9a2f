"""The Orchestra side: echo jobs through `app.jobs`, the real worker and the real API."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import redis
import requests
from sqlalchemy import func, select

from app import db, events, jobs, pubsub
from app.config import Settings
from app.models import Job
from app.tenants import TenantRef
from bench.measure import throughput, timed, wait_until
from bench.procs import Proc

TENANT = "bench"
_BAD = {"failed", "cancelled"}


@dataclass
class Orchestra:
    """The domain wired in this process, and a tenant with its API key."""

    settings: Settings
    tenant: TenantRef
    secret: str
    redis: redis.Redis


def connect(settings: Settings) -> Orchestra:
    """Wire `app/` in this process as an entry point does, and create the bench's tenant."""
    from app import bootstrap, tenants
    from workers import make_celery

    bootstrap.init(settings, sender=make_celery(settings).send_task)
    secret = tenants.create_key(TENANT)
    tenant = tenants.authenticate(secret)
    return Orchestra(settings, tenant, secret, redis.Redis.from_url(settings.redis_url))


def submit_echo(o: Orchestra, batch: str, i: int) -> str:
    """Submit one `echo` job tagged with `batch` (its `card_id`); its id."""
    job, _ = jobs.submit(o.tenant, {"kind": "echo", "params": {"i": i}, "card_id": batch})
    return job["id"]


def _statuses(batch: str) -> dict[str, int]:
    """How many jobs of the batch are in each status."""
    q = select(Job.status, func.count()).where(Job.card_id == batch).group_by(Job.status)
    with db.transaction() as conn:
        return dict(conn.execute(q).all())


def _all_completed(batch: str, n: int) -> bool:
    """Whether the batch's `n` jobs are all `completed` in Postgres (raise if any failed)."""
    counts = _statuses(batch)
    if bad := {s: c for s, c in counts.items() if s in _BAD}:
        raise RuntimeError(f"jobs of {batch} ended badly: {bad}")
    return counts.get("completed", 0) >= n


def drain(o: Orchestra, n: int, worker: Proc, timeout_s: float, label: str) -> dict:
    """Submit `n` echo jobs as fast as one process can; time until all are `completed`."""
    batch = f"{label}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    for i in range(n):
        submit_echo(o, batch, i)
    end = wait_until(
        lambda: _all_completed(batch, n), timeout_s, f"{n} echo jobs", check=worker.check
    )
    return throughput(n, start, end)


def _subscribe(o: Orchestra):
    """A pub/sub listener on the tenant's channel, confirmed before any job is submitted."""
    listener = o.redis.pubsub()
    listener.subscribe(pubsub.channel(o.tenant.name))
    message = listener.get_message(timeout=5)
    if message is None or message["type"] != "subscribe":
        raise RuntimeError(f"no subscribe confirmation from Redis: {message!r}")
    return listener


def _await_completed(listener, job_id: str, timeout_s: float) -> None:
    """Read the tenant's events until `job_id` is reported `completed`."""
    deadline = time.perf_counter() + timeout_s
    while (left := deadline - time.perf_counter()) > 0:
        message = listener.get_message(timeout=left)
        if message is None or message["type"] != "message":
            continue
        env = json.loads(message["data"])
        payload = env.get("payload", {})
        if env.get("event_type") != events.JOB_STATUS_UPDATED or payload.get("job_id") != job_id:
            continue
        if payload["status"] == "completed":
            return
        if payload["status"] in _BAD:
            raise RuntimeError(f"job {job_id} ended {payload['status']}: {payload.get('error')}")
    raise TimeoutError(f"job {job_id} not completed within {timeout_s:.0f} s")


def round_trips(o: Orchestra, n: int, worker: Proc) -> list[float]:
    """Latencies of `n` sequential echo jobs, from submit until their `completed` event.

    The event is published right after the commit that makes the job `completed`, so it
    is what a client of the relay sees, without polling Postgres.
    """
    listener = _subscribe(o)
    batch = f"round-trip-{uuid.uuid4().hex[:8]}"
    counter = iter(range(n))

    def one() -> None:
        job_id = submit_echo(o, batch, next(counter))
        try:
            _await_completed(listener, job_id, 30)
        except TimeoutError:
            worker.check()
            raise

    try:
        latencies = timed(one, n)
    finally:
        listener.close()
    if not _all_completed(batch, n):
        raise RuntimeError("completed events were seen for jobs Postgres does not call completed")
    return latencies


def _api_url(o: Orchestra, path: str) -> str:
    return f"http://{o.settings.bind_host}:{o.settings.api_port}{path}"


def wait_api_ready(o: Orchestra, api: Proc, timeout_s: float = 60) -> None:
    """Wait until the API answers its readiness check (database, Redis, broker)."""

    def ready() -> bool:
        try:
            return requests.get(_api_url(o, "/health/readiness"), timeout=5).status_code == 200
        # Not listening yet, or too busy booting (workers and Celery start at once): retry.
        except (requests.ConnectionError, requests.Timeout):
            return False

    wait_until(ready, timeout_s, "the API's readiness", check=api.check)


def http_submit_latencies(o: Orchestra, n: int, warm: int) -> list[float]:
    """Latencies of `POST /api/v1/jobs` on one keep-alive connection, one at a time."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {o.secret}"
    url = _api_url(o, "/api/v1/jobs")
    body = {"kind": "echo", "params": {"i": 0}, "card_id": "submit-latency"}

    def one() -> None:
        resp = session.post(url, json=body, timeout=10)
        if resp.status_code != 202:
            raise RuntimeError(f"POST /api/v1/jobs answered {resp.status_code}: {resp.text}")

    try:
        timed(one, warm)
        return timed(one, n)
    finally:
        session.close()


def close(o: Orchestra) -> None:
    """Release this process's connections, so the database can be dropped cleanly."""
    o.redis.close()
    db.engine().dispose()

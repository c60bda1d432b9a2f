"""The Orchestra side of the bench: the domain wired in this process, a tenant and its key,
in-process echo submits (fills and warm-ups) and the API's readiness."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis
import requests
from sqlalchemy import func, select

from app import db, jobs
from app.config import Settings
from app.models import Job
from app.tenants import TenantRef
from bench.measure import throughput, wait_until
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
    return str(job.id)


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


def api_url(o: Orchestra, path: str) -> str:
    return f"http://{o.settings.bind_host}:{o.settings.api_port}{path}"


def wait_api_ready(o: Orchestra, api: Proc, timeout_s: float = 60) -> None:
    """Wait until the API answers its readiness check (database, Redis, broker)."""

    def ready() -> bool:
        try:
            return requests.get(api_url(o, "/health/readiness"), timeout=5).status_code == 200
        # Not listening yet, or too busy booting (workers and Celery start at once): retry.
        except (requests.ConnectionError, requests.Timeout):
            return False

    wait_until(ready, timeout_s, "the API's readiness", check=api.check)


def remove_jobs(*where) -> None:
    """Delete the jobs matching `where` with their events and counters (set-based): sections
    share the run's database, and retention's sweep (oldest first) would spend its measured
    window on another section's backlog instead of on its own jobs."""
    from sqlalchemy import delete, select

    from app import db
    from app.models import Event, EventCounter, Job

    ids = select(Job.id).where(*where).scalar_subquery()
    with db.transaction() as conn:
        for table in (Event, EventCounter):
            conn.execute(delete(table).where(table.subject_type == "job",
                                             table.subject_id.in_(ids)))
        conn.execute(delete(Job).where(*where))


def close(o: Orchestra) -> None:
    """Release this process's connections, so the database can be dropped cleanly."""
    o.redis.close()
    db.engine().dispose()

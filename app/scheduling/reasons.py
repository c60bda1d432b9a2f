"""Why a job still waits: computed when it is read, from the same state the scheduler reads.

`waiting_reason` is None unless the job is `queued` or `retrying`; otherwise one of:
`due_at` (a countdown or a retry's backoff), `provider_limited` (its service asked it to
wait), `paused`, `tenant_limit`, `key_limit` (its key at N of N), `fair_share` (its turn
among the tenants' jobs has not come: the broker's room is taken) or `dispatched` (admitted
and sent: waiting for a free worker).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from app import db, jobs
from app.events import iso
from app.models import ConcurrencyLimit, Job, JobStatus
from app.rows import JobRow
from app.scheduling import admission, limits, pauses
from app.tenants import TenantRef

PROVIDER_LIMITED = "PROVIDER_LIMITED"  # the error code of a hold (app/runs.py)
_WAITING = (JobStatus.QUEUED, JobStatus.RETRYING)


def _holding(conn, tenant_id, key: str) -> int:
    q = select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant_id, Job.concurrency_key == key, *limits.HOLDING)
    return conn.execute(q).scalar_one()


def _key_limit(conn, job: JobRow, default: int) -> int:
    own = conn.execute(select(ConcurrencyLimit.max_running).where(
        ConcurrencyLimit.tenant_id == job.tenant_id,
        ConcurrencyLimit.concurrency_key == job.concurrency_key,
    )).scalar()
    return default if own is None else own


def waiting_reason(conn, job: JobRow, now: datetime | None = None) -> dict | None:
    """Why this job has not started, as `{code, message, ...}`; None if it is not waiting."""
    if job.status not in _WAITING:
        return None
    if job.admitted_at is not None:
        return {"code": "dispatched", "message": "sent to the workers; waiting for a free one"}
    now = now or datetime.now(UTC)
    if job.run_after > now:
        code = "provider_limited" if (job.error or {}).get("code") == PROVIDER_LIMITED \
            else "due_at"
        why = "its service asked it to wait" if code == "provider_limited" else "not due yet"
        return {"code": code, "due_at": iso(job.run_after),
                "message": f"{why}: due at {iso(job.run_after)}"}
    if pauses.matching(conn, job.tenant_id, job.kind):
        return {"code": "paused", "message": f"paused ({job.kind} or this tenant's work)"}
    tenant = limits.of_tenant(conn, job.tenant_id)
    running = admission.slots_taken(conn, job.tenant_id)
    if running + admission.cost_of(job.kind) > tenant.max_running + 1e-9:
        return {"code": "tenant_limit", "running": running, "limit": tenant.max_running,
                "message": f"the tenant runs {running:g} of {tenant.max_running} slots"}
    if job.concurrency_key is not None:
        limit = _key_limit(conn, job, tenant.key_limit)
        held = _holding(conn, job.tenant_id, job.concurrency_key)
        if held >= limit:
            return {"code": "key_limit", "key": job.concurrency_key, "running": held,
                    "limit": limit,
                    "message": f"key {job.concurrency_key} at {held} of {limit}"}
    return {"code": "fair_share",
            "message": "waiting its turn among the tenants' jobs for room on the workers"}


def job_and_reason(tenant: TenantRef, job_id) -> tuple[JobRow, dict | None]:
    """One of the tenant's jobs, and why it waits (`GET /api/v1/jobs/{id}`)."""
    with db.transaction() as conn:
        job = jobs.load(conn, job_id, tenant.id)
        return job, waiting_reason(conn, job)

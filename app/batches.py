"""A batch of job requests: checked all together, written in one transaction, set-based.

Every item is checked before anything is written (the single submit's checks, and a key
given twice); then one INSERT (an array per column, `db.insert_rows`) makes the jobs, one
SELECT finds the jobs of the keys this tenant used before, two statements record the first
events, and after commit the events leave in one pipelined publish and the messages (instant
jobs sharing them) in one pipelined send.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from app import config, events, jobs
from app.errors import Conflict, ValidationFailed
from app.models import Job
from app.outbox import unit_of_work
from app.rows import JobRow
from app.tenants import TenantRef

MAX_ITEMS = 1000


def _problems(
    items: list[dict], settings: config.Settings, tenant: TenantRef
) -> tuple[list[float], dict]:
    """Each item's `timeout_s`, and what is wrong with any of them as `jobs.<i>.<field>`."""
    timeouts, details, first_with = [], {}, {}
    for i, item in enumerate(items):
        try:
            timeouts.append(jobs.checked(item, settings, tenant))
        except ValidationFailed as exc:
            timeouts.append(0.0)
            details.update({f"jobs.{i}.{field}": why for field, why in exc.details.items()})
        key = item.get("idempotency_key")
        if key is None:
            continue
        if key in first_with:
            details[f"jobs.{i}.idempotency_key"] = [
                f"used twice in this batch (item {first_with[key]} has it too)"
            ]
        else:
            first_with[key] = i
    return timeouts, details


def _earlier(conn: Connection, tenant: TenantRef, keys: list[str]) -> dict[str, JobRow]:
    """The tenant's jobs made before under these idempotency keys, by key: one SELECT."""
    if not keys:
        return {}
    q = jobs.select_job().where(Job.tenant_id == tenant.id, Job.idempotency_key.in_(keys))
    return {row["idempotency_key"]: JobRow.of(row) for row in conn.execute(q).mappings()}


def submit_batch(
    tenant: TenantRef, items: list[dict], correlation_id: str | None = None
) -> tuple[list[JobRow], list[int]]:
    """Create a queued job for each item (`idempotency_key` optional on each), or none if
    any is refused; `(jobs in the items' order, indexes of those found by their key)`."""
    settings = config.current()
    if len(items) > MAX_ITEMS:
        raise ValidationFailed("batch too large", {"jobs": [f"at most {MAX_ITEMS} items"]})
    timeouts, details = _problems(items, settings, tenant)
    if details:
        refused = len({field.split(".")[1] for field in details})
        raise ValidationFailed(f"{refused} of {len(items)} jobs refused; none made", details)
    now = datetime.now(UTC)
    rows = [
        jobs.new_row(tenant, item, timeout_s, item.get("idempotency_key"), correlation_id, now,
                     settings)
        for item, timeout_s in zip(items, timeouts, strict=True)
    ]
    with unit_of_work("api") as uow:
        # Keyed rows first, in key order: two batches sharing keys take the unique index's
        # locks in one order, so they wait for each other instead of deadlocking.
        ordered = sorted(rows, key=lambda r: (r["idempotency_key"] is None,
                                              r["idempotency_key"] or ""))
        made = {
            row["id"]: JobRow.of(row, tenant=tenant.name)
            for row in uow.conn.execute(jobs.insert_many(ordered)).mappings()
        }
        # A row not made had a key this tenant used before (or a concurrent request just
        # committed): ON CONFLICT DO NOTHING waited for it, and this SELECT sees it.
        earlier = _earlier(uow.conn, tenant, [r["idempotency_key"] for r in rows
                                              if r["id"] not in made])
        out, replayed = [], []
        for i, row in enumerate(rows):
            job = made.get(row["id"])
            if job is None:
                job = earlier.get(row["idempotency_key"])
                if job is None:  # the earlier job went (retention) between the two reads
                    raise Conflict("a job of this batch changed while it was submitted; "
                                   "send the batch again",
                                   {f"jobs.{i}.idempotency_key": ["its job was just removed"]})
                replayed.append(i)
            out.append(job)
        new = [made[r["id"]] for r in rows if r["id"] in made]
        uow.record_first([(jobs.subject(j), jobs.queued_payload(j)) for j in new],
                         events.JOB_STATUS_UPDATED)
        if any(job.id in made and jobs.countdown_s(item) <= 0
               for job, item in zip(out, items, strict=True)):
            uow.after_commit(jobs.admit_soon)
    return out, replayed

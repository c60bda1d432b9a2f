"""The limits the scheduler obeys: per tenant (weight, running jobs, priority, key default)
and per concurrency key.

A tenant's values are the deployment's settings (`TENANT_WEIGHT`, `TENANT_MAX_RUNNING`,
`TENANT_MAX_PRIORITY`, `CONCURRENCY_KEY_LIMIT`) unless the operator set its own (the CLI's
`scheduling limits`: a tenant may not raise its own share). A tenant sets limits for its own
concurrency keys through the API; an agent's jobs carry the key `agent:<agent id>`, so an
agent's limit is that key's.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from app import config, db, jobs, tenants
from app.errors import NotFound, ValidationFailed
from app.models import ConcurrencyLimit, Job, Tenant
from app.outbox import unit_of_work
from app.scheduling import pauses
from app.tenants import TenantRef

AGENT_KEY_PREFIX = "agent:"
# Letters, digits and `._:@-`: a key is a path segment of its route as it is.
KEY = re.compile(r"^[A-Za-z0-9._:@-]{1,255}$")
KEY_RULE = "1-255 letters, digits or ._:@-"
MAX_KEY_LIMITS = 10_000  # a tenant's key overrides, bounded like anything it can grow
HOLDING = (Job.admitted_at.isnot(None), Job.status.in_(("queued", "retrying", "processing")))
FIELDS = ("weight", "max_running", "max_priority", "key_limit")


def agent_key(agent_id: uuid.UUID) -> str:
    """The concurrency key of an agent's jobs."""
    return f"{AGENT_KEY_PREFIX}{agent_id}"


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's limits in force, and which of them are its own (not the defaults)."""

    weight: float
    max_running: int
    max_priority: int
    key_limit: int
    own: frozenset[str]

    def public(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS} | {"own": sorted(self.own)}


def _defaults(settings: config.Settings) -> dict:
    return {
        "weight": settings.tenant_weight,
        "max_running": settings.tenant_max_running,
        "max_priority": settings.tenant_max_priority,
        "key_limit": settings.concurrency_key_limit,
    }


def of_tenant(conn, tenant_id: uuid.UUID) -> TenantLimits:
    """The limits in force for a tenant."""
    row = conn.execute(select(*(getattr(Tenant, f) for f in FIELDS))
                       .where(Tenant.id == tenant_id)).one()
    own = {f: getattr(row, f) for f in FIELDS if getattr(row, f) is not None}
    return TenantLimits(**(_defaults(config.current()) | own), own=frozenset(own))


def _tenant_id(conn, name: str) -> uuid.UUID:
    found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
    if found is None:
        raise NotFound(f"no tenant named {name!r}")
    return found


_BOUNDS = {
    "weight": (lambda v: v > 0, "must be more than 0"),
    "max_running": (lambda v: v >= 0, "must be 0 or more"),
    "max_priority": (lambda v: 0 <= v <= 9, "must be 0 to 9"),
    "key_limit": (lambda v: v >= 0, "must be 0 or more"),
}


def set_tenant_limits(name: str, values: dict, reset: tuple[str, ...] = ()) -> TenantLimits:
    """The operator's overrides of a tenant's limits (`reset`: back to the default)."""
    details = {f: [why] for f, v in values.items() if not _BOUNDS[f][0](v) for why in
               [_BOUNDS[f][1]]}
    if details:
        raise ValidationFailed("tenant limits rejected", details)
    with unit_of_work("cli") as uow:
        tenant_id = _tenant_id(uow.conn, name)
        changes = values | {f: None for f in reset}
        if changes:
            uow.conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(**changes))
            uow.after_commit(jobs.admit_soon)  # a higher limit may free slots at once
        limits = of_tenant(uow.conn, tenant_id)
    if "max_priority" in changes:
        tenants.forget_verified()  # each process remembers a key's tenant with its limit
    return limits


def tenant_limits(name: str) -> TenantLimits:
    """A tenant's limits in force, by its name (the operator's view)."""
    with db.transaction() as conn:
        return of_tenant(conn, _tenant_id(conn, name))


def check_key(key: str, field: str = "key") -> str:
    """A concurrency key a tenant names, or `ValidationFailed`."""
    if not KEY.match(key):
        raise ValidationFailed("bad concurrency key",
                               {field: [KEY_RULE]})
    return key


def _running(conn, tenant_id: uuid.UUID, keys: list[str]) -> dict[str, int]:
    rows = conn.execute(
        select(Job.concurrency_key, func.count())
        .where(Job.tenant_id == tenant_id, Job.concurrency_key.in_(keys), *HOLDING)
        .group_by(Job.concurrency_key)
    )
    return dict(rows.all())


def key_limit(tenant: TenantRef, key: str) -> dict:
    """A key's limit in force, whether it is the key's own, and the slots its jobs hold."""
    check_key(key)
    with db.transaction() as conn:
        own = conn.execute(
            select(ConcurrencyLimit.max_running)
            .where(ConcurrencyLimit.tenant_id == tenant.id, ConcurrencyLimit.concurrency_key == key)
        ).scalar()
        default = of_tenant(conn, tenant.id).key_limit
        running = _running(conn, tenant.id, [key]).get(key, 0)
    return {"key": key, "max_running": default if own is None else own,
            "own": own is not None, "running": running}


def set_key_limit(tenant: TenantRef, key: str, max_running: int) -> dict:
    """Set the limit of one of the tenant's concurrency keys; its `key_limit` view. The
    scheduler obeys it from its next pass; jobs already holding slots keep them."""
    check_key(key)
    if max_running < 0:
        raise ValidationFailed("bad limit", {"max_running": ["must be 0 or more"]})
    with unit_of_work("api") as uow:
        mine = ConcurrencyLimit.tenant_id == tenant.id
        keys = uow.conn.execute(select(
            func.count(), func.bool_or(ConcurrencyLimit.concurrency_key == key)
        ).where(mine)).one()
        if not keys[1] and keys[0] >= MAX_KEY_LIMITS:
            raise ValidationFailed("too many key limits",
                                   {"key": [f"a tenant may set at most {MAX_KEY_LIMITS:,}"]})
        now = datetime.now(UTC)
        uow.conn.execute(
            insert(ConcurrencyLimit)
            .values(tenant_id=tenant.id, concurrency_key=key, max_running=max_running,
                    updated_at=now)
            .on_conflict_do_update(index_elements=["tenant_id", "concurrency_key"],
                                   set_={"max_running": max_running, "updated_at": now})
        )
        uow.after_commit(jobs.admit_soon)
    return key_limit(tenant, key)


def clear_key_limit(tenant: TenantRef, key: str) -> dict:
    """Put a key back on the tenant's default limit; its `key_limit` view."""
    check_key(key)
    with db.transaction() as conn:
        conn.execute(delete(ConcurrencyLimit).where(ConcurrencyLimit.tenant_id == tenant.id,
                                                    ConcurrencyLimit.concurrency_key == key))
    return key_limit(tenant, key)


def key_limits(tenant: TenantRef, limit: int = 100, after: str | None = None) -> list[dict]:
    """The tenant's own key limits, by key, `limit` at a time after the key `after`."""
    q = (select(ConcurrencyLimit.concurrency_key, ConcurrencyLimit.max_running)
         .where(ConcurrencyLimit.tenant_id == tenant.id)
         .order_by(ConcurrencyLimit.concurrency_key).limit(limit))
    if after is not None:
        q = q.where(ConcurrencyLimit.concurrency_key > after)
    with db.transaction() as conn:
        rows = conn.execute(q).all()
        running = _running(conn, tenant.id, [r.concurrency_key for r in rows])
    return [{"key": r.concurrency_key, "max_running": r.max_running, "own": True,
             "running": running.get(r.concurrency_key, 0)} for r in rows]


def overview(tenant: TenantRef) -> dict:
    """The tenant's limits in force, the slots it holds, its jobs waiting for one, and the
    pauses that hold its work back."""
    waiting = (Job.admitted_at.is_(None), Job.status.in_(("queued", "retrying")))
    with db.transaction() as conn:
        counts = [
            conn.execute(select(func.count()).select_from(Job)
                         .where(Job.tenant_id == tenant.id, *where)).scalar_one()
            for where in (HOLDING, waiting)
        ]
        mine = of_tenant(conn, tenant.id)
    return {"limits": mine.public(), "running": counts[0], "waiting": counts[1],
            "pauses": pauses.paused(tenant.id)}

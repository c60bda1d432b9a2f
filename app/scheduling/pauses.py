"""Pause and resume: work the scheduler holds back, by tenant, by kind, or both.

A paused job stays `queued` in Postgres (nothing is sent); what already holds a slot is not
touched. Resuming lets the next admission pass see the jobs again, in the usual fair order.
A tenant's admin pauses its own tenant or one of its kinds (the API, the console); the
operator pauses any tenant, or a kind for every tenant (the CLI).
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert

from app import db, generators, jobs
from app.events import iso
from app.models import Pause, Tenant
from app.outbox import unit_of_work


def _scope(tenant_id: uuid.UUID | None, kind: str | None):
    if kind is not None:
        generators.get(kind)  # ValidationFailed for an unknown kind
    return (Pause.tenant_id.is_(None) if tenant_id is None else Pause.tenant_id == tenant_id,
            Pause.kind.is_(None) if kind is None else Pause.kind == kind)


def pause(tenant_id: uuid.UUID | None, kind: str | None) -> bool:
    """Pause a tenant's work (`kind` None), a kind for everyone (`tenant_id` None), or one
    kind of one tenant; False if it was paused already."""
    _scope(tenant_id, kind)
    if tenant_id is None and kind is None:
        raise ValueError("a pause names a tenant, a kind, or both")
    with db.transaction() as conn:
        made = conn.execute(insert(Pause).values(id=uuid.uuid4(), tenant_id=tenant_id, kind=kind)
                            .on_conflict_do_nothing().returning(Pause.id)).first()
    return made is not None


def resume(tenant_id: uuid.UUID | None, kind: str | None) -> bool:
    """Lift that pause (the jobs it held are admitted in the usual order); False if none."""
    with unit_of_work("api") as uow:
        gone = uow.conn.execute(delete(Pause).where(*_scope(tenant_id, kind))).rowcount
        if gone:
            uow.after_commit(jobs.admit_soon)
    return bool(gone)


def paused(tenant_id: uuid.UUID | None = None) -> list[dict]:
    """The pauses in force: a tenant's and every kind's for everyone (all, given None)."""
    q = (select(Pause.kind, Pause.created_at, Tenant.name.label("tenant"))
         .outerjoin(Tenant, Tenant.id == Pause.tenant_id)
         .order_by(Pause.created_at))
    if tenant_id is not None:
        q = q.where(or_(Pause.tenant_id == tenant_id, Pause.tenant_id.is_(None)))
    with db.transaction() as conn:
        rows = conn.execute(q).all()
    return [{"tenant": r.tenant, "kind": r.kind, "since": iso(r.created_at)} for r in rows]


def matching(conn, tenant_id: uuid.UUID, kind: str) -> bool:
    """Whether a pause holds back this tenant's jobs of this kind."""
    return conn.execute(
        select(Pause.id).where(
            or_(Pause.tenant_id.is_(None), Pause.tenant_id == tenant_id),
            or_(Pause.kind.is_(None), Pause.kind == kind),
        ).limit(1)
    ).first() is not None

"""The audit trail: which key did what to what (an agent, a chat provider), when; written in
the operation's transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, insert, select

from app import db
from app.errors import ValidationFailed
from app.events import iso
from app.models import AuditEntry
from app.tenants import TenantRef


def record(
    conn: Connection, who: TenantRef, action: str, subject: tuple[str, uuid.UUID], details: dict
) -> None:
    """Add one entry; `who` is the caller's key, `subject` e.g. `("agent", id)`."""
    conn.execute(
        insert(AuditEntry).values(
            tenant_id=who.id,
            key_id=who.key_id,
            key_prefix=who.key_prefix,
            action=action,
            subject_type=subject[0],
            subject_id=subject[1],
            details=details,
        )
    )


def public(row) -> dict:
    return {
        "id": row.id,
        "at": iso(row.created_at),
        "key": {"id": str(row.key_id) if row.key_id else None, "prefix": row.key_prefix},
        "action": row.action,
        "subject": {"type": row.subject_type, "id": str(row.subject_id)},
        "details": row.details,
    }


def entries(
    tenant: TenantRef, subject_id: str | None = None, limit: int = 50, before: int | None = None
) -> tuple[list[dict], int | None]:
    """The tenant's entries, newest first; `(items, next_before)` for the next page."""
    q = select(AuditEntry).where(AuditEntry.tenant_id == tenant.id)
    if subject_id is not None:
        try:
            q = q.where(AuditEntry.subject_id == uuid.UUID(str(subject_id)))
        except ValueError:
            raise ValidationFailed("bad subject id", {"agent_id": ["not a UUID"]}) from None
    if before is not None:
        q = q.where(AuditEntry.id < before)
    with db.transaction() as conn:
        rows = conn.execute(q.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    items = [public(r) for r in rows[:limit]]
    return items, (rows[limit - 1].id if len(rows) > limit else None)

"""Tenants and their API keys. A key's secret is stored only as a hash."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from app import db
from app.errors import ValidationFailed
from app.models import ApiKey, Tenant

SECRET_PREFIX = "orc_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class TenantRef:
    """Who is asking: the tenant behind an API key."""

    id: uuid.UUID
    name: str
    # The key that is asking (audit trails name it); None outside a request.
    key_id: uuid.UUID | None = None
    key_prefix: str | None = None


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret. Secrets are 256 random bits, so a slow KDF adds nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(tenant_name: str) -> str:
    """Create an API key for `tenant_name` (creating the tenant if new); return the secret."""
    if not _NAME.match(tenant_name):
        raise ValidationFailed(
            "bad tenant name", {"tenant": ["lowercase letters, digits, '-' and '_', 1-100"]}
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as conn:
        conn.execute(insert(Tenant).values(name=tenant_name).on_conflict_do_nothing())
        tenant_id = conn.execute(select(Tenant.id).where(Tenant.name == tenant_name)).scalar_one()
        conn.execute(
            insert(ApiKey).values(
                tenant_id=tenant_id, prefix=secret[:12], key_hash=hash_secret(secret)
            )
        )
    return secret


def authenticate(secret: str) -> TenantRef | None:
    """The tenant of a valid, unrevoked key, or None."""
    if not secret or len(secret) > 200:
        return None
    with db.transaction() as conn:
        row = conn.execute(
            select(Tenant.id, Tenant.name, ApiKey.id.label("key_id"), ApiKey.prefix)
            .join(ApiKey, ApiKey.tenant_id == Tenant.id)
            .where(ApiKey.key_hash == hash_secret(secret), ApiKey.revoked_at.is_(None))
        ).first()
    return TenantRef(row.id, row.name, row.key_id, row.prefix) if row else None

"""Tenants and their API keys. A key's secret is stored only as a hash, with its scopes."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import uuid
from dataclasses import dataclass

import redis
from cachetools import TTLCache
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert

from app import config, db, pubsub
from app.errors import ValidationFailed
from app.models import ApiKey, Tenant

log = logging.getLogger(__name__)

SECRET_PREFIX = "orc_"
PREFIX_LEN = 12  # kept in clear to find a key's row and to name it in audits and logs
SCOPES = ("jobs:read", "jobs:write", "agents:read", "agents:write", "admin")
DEFAULT_SCOPES = ("jobs:read", "jobs:write", "agents:read", "agents:write")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class TenantRef:
    """Who is asking: the tenant behind an API key."""

    id: uuid.UUID
    name: str
    # The key that is asking (audit trails name it); None outside a request.
    key_id: uuid.UUID | None = None
    key_prefix: str | None = None
    scopes: frozenset[str] = frozenset()
    # The highest priority it may submit at (None: TENANT_MAX_PRIORITY).
    max_priority: int | None = None

    def allows(self, scope: str) -> bool:
        """Whether this key holds `scope` (`admin` holds them all)."""
        return scope in self.scopes or "admin" in self.scopes


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret. Secrets are 256 random bits, so a slow KDF adds nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(tenant_name: str, scopes=DEFAULT_SCOPES) -> str:
    """Create an API key for `tenant_name` (creating the tenant if new); return the secret."""
    if not _NAME.match(tenant_name):
        raise ValidationFailed(
            "bad tenant name", {"tenant": ["lowercase letters, digits, '-' and '_', 1-100"]}
        )
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValidationFailed("bad scopes", {"scopes": [f"one or more of {', '.join(SCOPES)}"]})
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as conn:
        conn.execute(insert(Tenant).values(name=tenant_name).on_conflict_do_nothing())
        tenant_id = conn.execute(select(Tenant.id).where(Tenant.name == tenant_name)).scalar_one()
        conn.execute(
            insert(ApiKey).values(
                tenant_id=tenant_id,
                prefix=secret[:PREFIX_LEN],
                key_hash=hash_secret(secret),
                scopes=sorted(set(scopes)),
            )
        )
    return secret


# Built once: every request runs it, and building it costs more CPU than running it.
_KEYS_BY_PREFIX = (
    select(
        Tenant.id,
        Tenant.name,
        ApiKey.id.label("key_id"),
        ApiKey.prefix,
        ApiKey.key_hash,
        ApiKey.scopes,
        Tenant.max_priority,
    )
    .join(ApiKey, ApiKey.tenant_id == Tenant.id)
    .where(ApiKey.prefix == bindparam("prefix"), ApiKey.revoked_at.is_(None))
)


def authenticate(secret: str, remembered: bool = True) -> TenantRef | None:
    """The tenant (and scopes) of a valid, unrevoked key, or None.

    A key verified in Postgres is remembered by this process (`_verified`) with the
    revocation generation it was verified under; while Redis still holds that generation
    and `AUTH_CACHE_S` has not passed, it is not looked up again (`remembered=False` always
    asks Postgres: the relay's connect, rare and the door a revocation in SQL must shut at
    once). Otherwise the row is found by the key's clear prefix and the hashes compared in
    constant time, so response timing says nothing about how much of a guessed hash matched.
    """
    if not secret or len(secret) > 200 or not secret.startswith(SECRET_PREFIX):
        return None
    digest = hash_secret(secret)
    generation = _verified.generation() if remembered else None
    found = _verified.get(digest, generation)
    if found is not None:
        return found
    with db.transaction() as conn:
        rows = conn.execute(_KEYS_BY_PREFIX, {"prefix": secret[:PREFIX_LEN]}).all()
    for row in rows:
        if hmac.compare_digest(row.key_hash, digest):
            found = TenantRef(row.id, row.name, row.key_id, row.prefix, frozenset(row.scopes),
                              row.max_priority)
            _verified.put(digest, generation, found)
            return found
    return None


class _VerifiedKeys:
    """Keys this process verified, each with the revocation generation it was verified under.

    Every revocation increments a counter in Redis (`revocation_generation_key()`) before
    `revoke()` returns, and a remembered key is trusted only while the counter still reads
    what it read then: one Redis GET per request instead of a Postgres transaction, and a
    revoked key is refused from the next request on, in every process. Redis unreachable:
    nothing is trusted (Postgres answers). A revocation written in SQL alone, or one whose
    announcement failed, moves no counter: it holds after at most `AUTH_CACHE_S`. Only valid
    keys are kept, so a flood of random tokens cannot fill it; it is bounded besides.
    """

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()  # gunicorn's threads share this process's cache
        self._cache: TTLCache | None = None
        self._ttl: float | None = None

    def _entries(self) -> TTLCache | None:
        ttl = config.current().auth_cache_s
        if ttl != self._ttl:
            self._cache = TTLCache(self.MAX_KEYS, ttl) if ttl > 0 else None
            self._ttl = ttl
        return self._cache

    @staticmethod
    def generation() -> bytes | None:
        """The revocation counter as Redis holds it now (b"" before the first revocation),
        or None when Redis cannot say."""
        try:
            return pubsub.client().get(revocation_generation_key()) or b""
        except (redis.RedisError, RuntimeError):
            return None

    def get(self, digest: str, generation: bytes | None) -> TenantRef | None:
        with self._lock:
            entries = self._entries()
            if entries is None or generation is None:
                return None
            hit = entries.get(digest)
        return hit[1] if hit is not None and hit[0] == generation else None

    def put(self, digest: str, generation: bytes | None, tenant: TenantRef) -> None:
        with self._lock:
            entries = self._entries()
            if entries is not None and generation is not None:
                entries[digest] = (generation, tenant)

    def clear(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.clear()


_verified = _VerifiedKeys()


def revocation_generation_key() -> str:
    """The Redis counter every revocation increments (see `_VerifiedKeys`)."""
    return f"{pubsub.prefix()}:keys:generation"


def revocation_channel() -> str:
    """The pub/sub channel that tells every relay which keys were just revoked."""
    return f"{pubsub.prefix()}:keys:revoked"


def find_tenant(name: str) -> uuid.UUID | None:
    """A tenant's id by its name, or None."""
    with db.transaction() as conn:
        return conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()


def forget_verified() -> None:
    """Have every process look keys up in Postgres again (what it remembers of a tenant,
    its priority limit, changed): the revocation generation moves. Best effort, as a
    revocation's: at worst the change holds after AUTH_CACHE_S."""
    _verified.clear()
    try:
        pubsub.client().incr(revocation_generation_key())
    except (redis.RedisError, RuntimeError) as exc:
        log.warning("key cache generation not moved (holds after AUTH_CACHE_S): %s", exc)


def _announce_revoked(key_ids: list[uuid.UUID]) -> None:
    """Move the revocation generation (every process's remembered keys are then checked in
    Postgres again) and tell every relay to disconnect these keys' sockets now, in one round
    trip. Best effort: with Redis away no process trusts what it remembers, and a relay
    finds the revocation in Postgres at its next check (`RELAY_KEY_RECHECK_S`)."""
    _verified.clear()
    if not key_ids:
        return
    notice = json.dumps({"key_ids": [str(k) for k in key_ids]})
    try:
        pipe = pubsub.client().pipeline(transaction=False)
        pipe.incr(revocation_generation_key())
        pipe.publish(revocation_channel(), notice)
        pipe.execute()
    except (redis.RedisError, RuntimeError) as exc:
        log.warning("revocation not announced (relays recheck keys anyway): %s", exc)


def revoke(key: str) -> int:
    """Revoke a key, named by its secret or its prefix; return how many keys were revoked.

    After commit, every relay is told on Redis to disconnect the key's open sockets.
    """
    prefix = key[:PREFIX_LEN]
    if len(prefix) < PREFIX_LEN or not prefix.startswith(SECRET_PREFIX):
        raise ValidationFailed(
            "bad key", {"key": [f"a secret or its first {PREFIX_LEN} characters"]}
        )
    where = [ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)]
    if len(key) > PREFIX_LEN:
        where.append(ApiKey.key_hash == hash_secret(key))
    with db.transaction() as conn:
        revoked = conn.execute(
            update(ApiKey).where(*where).values(revoked_at=func.now()).returning(ApiKey.id)
        ).scalars().all()
    _announce_revoked(revoked)
    return len(revoked)


_ACTIVE_KEYS = select(ApiKey.id).where(
    ApiKey.id.in_(bindparam("ids", expanding=True)), ApiKey.revoked_at.is_(None)
)


def active_keys(key_ids) -> set[uuid.UUID]:
    """Which of `key_ids` are still unrevoked (one query, for a relay's periodic check)."""
    ids = list(key_ids)
    if not ids:
        return set()
    with db.transaction() as conn:
        return set(conn.execute(_ACTIVE_KEYS, {"ids": ids}).scalars())


def key_active(key_id: uuid.UUID | None) -> bool:
    """Whether the key of an open connection is still unrevoked."""
    return key_id is not None and key_id in active_keys([key_id])


def list_keys(tenant_name: str) -> list[dict]:
    """A tenant's keys: prefix, scopes, created and revoked times (never a secret)."""
    with db.transaction() as conn:
        rows = conn.execute(
            select(ApiKey.prefix, ApiKey.scopes, ApiKey.created_at, ApiKey.revoked_at)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(Tenant.name == tenant_name)
            .order_by(ApiKey.created_at)
        ).all()
    return [dict(r._mapping) for r in rows]

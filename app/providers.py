"""Chat providers: the chat servers a tenant's admin names for its `chat` jobs (`provider`).

A provider is a name, a base URL and, optionally, an API key. The key is write-only. It is
encrypted before it reaches Postgres (cryptography's MultiFernet over PROVIDER_KEY_SECRETS:
the first secret encrypts, every one decrypts, so a secret can be rotated and `reseal` then
re-encrypts with the new one), decrypted only in the worker that runs a job naming the provider
(`for_job`, which finds it through the job's own tenant), and no view of a provider carries
anything of it but `has_key`: not its length, not its last characters. Without a secret no key
can be stored (`Conflict`, before anything is written), never a key stored in the clear.

The base URL passes the chat generator's own checks when it is set (`http.check_target`: http(s)
without whitespace, HTTP_ALLOWED_HOSTS, an address the netguard allows) and may not carry
credentials (a key goes in `api_key`, where it is encrypted); the generator checks it again at
every call, since a name can resolve elsewhere later. A tenant names at most MAX_PROVIDERS;
every change is in the audit trail, which records the name and URL, never the key.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from app import audit, config, db
from app.errors import Conflict, NotFound, ValidationFailed
from app.events import iso
from app.models import ChatProvider, Job, Tenant
from app.tenants import TenantRef

MAX_PROVIDERS = 100  # a tenant's providers, bounded like anything it can grow
# Lowercase, so `Acme` and `acme` are never two providers; a path segment as it is.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
NAME_RULE = "1-63 lowercase letters, digits or ._-, starting with a letter or digit"
MAX_URL_CHARS = 2000
# Visible ASCII only: the key goes into an `Authorization` header, where a CR or LF would
# start a header of the caller's choosing.
KEY_PATTERN = r"^[\x21-\x7e]{1,1000}$"
KEY_RULE = "1-1000 visible ASCII characters (no spaces)"
NOT_CONFIGURED = "PROVIDER_KEYS_NOT_CONFIGURED"

_NAME, _KEY = re.compile(NAME_PATTERN), re.compile(KEY_PATTERN)


class KeyUnreadable(Exception):
    """A stored key that PROVIDER_KEY_SECRETS cannot decrypt (its secret was removed, or this
    process has none). The message names the provider, never the key."""


@dataclass(frozen=True)
class Resolved:
    """A provider as the chat generator calls it: the key decrypted (kept out of `repr`)."""

    name: str
    base_url: str
    api_key: str | None = field(repr=False)


@functools.lru_cache(maxsize=4)
def _cipher_for(secrets: str) -> MultiFernet | None:
    keys = config.fernet_keys(secrets)
    return MultiFernet([Fernet(k) for k in keys]) if keys else None


def _cipher() -> MultiFernet | None:
    return _cipher_for(config.current().provider_key_secrets)


def seal(api_key: str) -> str:
    """The key encrypted with the first secret (a Fernet token), or `Conflict` without one."""
    cipher = _cipher()
    if cipher is None:
        raise Conflict(
            "PROVIDER_KEY_SECRETS is not set: this deployment cannot store provider keys",
            {"api_key": ["the operator must set PROVIDER_KEY_SECRETS first"]},
            code=NOT_CONFIGURED,
        )
    return cipher.encrypt(api_key.encode()).decode()


def unseal(token: str, name: str) -> str:
    """The key a token holds, or `KeyUnreadable`."""
    cipher = _cipher()
    if cipher is None:
        raise KeyUnreadable(f"provider {name!r} has a key but PROVIDER_KEY_SECRETS is not set")
    try:
        return cipher.decrypt(token.encode()).decode()
    except InvalidToken:
        raise KeyUnreadable(f"the key of provider {name!r} was not encrypted with any of "
                            "PROVIDER_KEY_SECRETS (was its secret removed?)") from None


def check_name(name: str, where: str = "name") -> str:
    """A provider's name, or `ValidationFailed`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationFailed("bad provider name", {where: [NAME_RULE]})
    return name


def _url_fault(url: str) -> str | None:
    """Why a base URL is refused, or None."""
    # Imported here: the chat generator imports this module as `app.generators` loads, and
    # importing `app.generators.http` first runs that package (a circle at import time).
    from app.generators import http

    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or not re.match(http.URL_PATTERN, url):
        return f"an http(s) URL of at most {MAX_URL_CHARS} characters, no whitespace"
    try:
        parts = urlsplit(url)
        credentials = parts.username is not None or parts.password is not None
    except ValueError:
        return "not a valid URL"
    if credentials:
        return "no credentials in the URL: the key goes in api_key, where it is encrypted"
    try:
        http.check_target(url)  # the generator's own check, at every call too
    except (http.PermanentError, http.TransientError) as exc:
        return str(exc)
    return None


def check_base_url(url: str) -> str:
    """A provider's base URL, or `ValidationFailed` saying why not."""
    why = _url_fault(url)
    if why is not None:
        raise ValidationFailed("bad base URL", {"base_url": [why]})
    return url


def public(row) -> dict:
    """What anyone may see of a provider: nothing of its key but whether it has one."""
    return {"name": row.name, "base_url": row.base_url, "has_key": row.api_key_sealed is not None,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


_VIEW = (ChatProvider.id, ChatProvider.name, ChatProvider.base_url, ChatProvider.api_key_sealed,
         ChatProvider.created_at, ChatProvider.updated_at)


def put(who: TenantRef, name: str, base_url: str, api_key: str | None = None) -> dict:
    """Create or replace the tenant's provider `name` (a replace without `api_key` drops the
    key); its public view."""
    check_name(name)
    check_base_url(base_url)
    if api_key is not None and (not isinstance(api_key, str) or not _KEY.match(api_key)):
        raise ValidationFailed("bad API key", {"api_key": [KEY_RULE]})
    sealed = seal(api_key) if api_key is not None else None
    mine = ChatProvider.tenant_id == who.id
    with db.transaction() as conn:
        # Concurrent creations of one tenant take turns here, so the count below holds.
        # (NO KEY UPDATE: the jobs inserted meanwhile, whose foreign key shares the row, pass.)
        conn.execute(select(Tenant.id).where(Tenant.id == who.id).with_for_update(key_share=True))
        known = conn.execute(select(func.count(), func.bool_or(ChatProvider.name == name))
                             .where(mine)).one()
        if not known[1] and known[0] >= MAX_PROVIDERS:
            raise ValidationFailed("too many providers",
                                   {"name": [f"a tenant may name at most {MAX_PROVIDERS}"]})
        now = datetime.now(UTC)
        row = conn.execute(
            insert(ChatProvider)
            .values(id=uuid.uuid4(), tenant_id=who.id, name=name, base_url=base_url,
                    api_key_sealed=sealed, created_at=now, updated_at=now)
            .on_conflict_do_update(constraint="uq_chat_providers_name",
                                   set_={"base_url": base_url, "api_key_sealed": sealed,
                                         "updated_at": now})
            .returning(*_VIEW)
        ).one()
        audit.record(conn, who, "provider.put", ("provider", row.id),
                     {"name": name, "base_url": base_url, "has_key": sealed is not None,
                      "created": not known[1]})
    return public(row)


def get(tenant: TenantRef, name: str) -> dict:
    """The tenant's provider `name`, or `NotFound`."""
    check_name(name)
    with db.transaction() as conn:
        row = conn.execute(select(*_VIEW).where(ChatProvider.tenant_id == tenant.id,
                                                ChatProvider.name == name)).first()
    if row is None:
        raise NotFound(f"no provider named {name!r}")
    return public(row)


def all_of(tenant: TenantRef) -> list[dict]:
    """The tenant's providers by name (at most MAX_PROVIDERS: one answer holds them all)."""
    with db.transaction() as conn:
        rows = conn.execute(select(*_VIEW).where(ChatProvider.tenant_id == tenant.id)
                            .order_by(ChatProvider.name)).all()
    return [public(r) for r in rows]


def remove(who: TenantRef, name: str) -> None:
    """Delete the tenant's provider `name` (jobs naming it fail from then on), or `NotFound`."""
    check_name(name)
    with db.transaction() as conn:
        gone = conn.execute(delete(ChatProvider)
                            .where(ChatProvider.tenant_id == who.id, ChatProvider.name == name)
                            .returning(ChatProvider.id)).scalar()
        if gone is None:
            raise NotFound(f"no provider named {name!r}")
        audit.record(conn, who, "provider.delete", ("provider", gone), {"name": name})


def exists(tenant_id: uuid.UUID, name: str) -> bool:
    """Whether the tenant has a provider `name` (a submit's check; the run looks it up
    again, as it may be deleted meanwhile)."""
    q = select(ChatProvider.id).where(ChatProvider.tenant_id == tenant_id,
                                      ChatProvider.name == name)
    with db.transaction() as conn:
        return conn.execute(q).first() is not None


def for_job(job_id: str, name: str) -> Resolved | None:
    """The provider `name` of the job's own tenant, its key decrypted; None if it has none
    of that name (never another tenant's). Raises `KeyUnreadable`."""
    q = (select(ChatProvider.base_url, ChatProvider.api_key_sealed)
         .join(Job, Job.tenant_id == ChatProvider.tenant_id)
         .where(Job.id == uuid.UUID(str(job_id)), ChatProvider.name == name))
    with db.transaction() as conn:
        row = conn.execute(q).first()
    if row is None:
        return None
    key = unseal(row.api_key_sealed, name) if row.api_key_sealed is not None else None
    return Resolved(name, row.base_url, key)


def reseal() -> int:
    """Re-encrypt every stored key with the first of PROVIDER_KEY_SECRETS (after a new secret
    was put first), so the old ones can be dropped; how many keys. Raises `KeyUnreadable`."""
    cipher = _cipher()
    if cipher is None:
        raise KeyUnreadable("PROVIDER_KEY_SECRETS is not set")
    with db.transaction() as conn:
        rows = conn.execute(select(ChatProvider.id, ChatProvider.name, ChatProvider.api_key_sealed)
                            .where(ChatProvider.api_key_sealed.isnot(None))
                            .with_for_update()).all()
        fresh = []
        for row in rows:
            try:
                fresh.append({"pid": row.id,
                              "sealed": cipher.rotate(row.api_key_sealed.encode()).decode()})
            except InvalidToken:
                raise KeyUnreadable(f"the key of provider {row.name!r} ({row.id}) was not "
                                    "encrypted with any of PROVIDER_KEY_SECRETS") from None
        if fresh:
            table = ChatProvider.__table__  # Core: one executemany, by primary key
            conn.execute(update(table).where(table.c.id == bindparam("pid"))
                         .values(api_key_sealed=bindparam("sealed")), fresh)
    return len(fresh)

"""Bearer API keys: who is calling, checked before every `/api/v1` request."""

from __future__ import annotations

from flask import g, request

from api.errors import ApiError
from app import tenants
from app.tenants import TenantRef


def token_from_header(value: str | None) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` header, or None."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticated() -> TenantRef | None:
    """The tenant of this request's valid key, or None; looked up once per request (the
    rate limiter asks before the scope check does)."""
    if "auth_checked" not in g:
        token = token_from_header(request.headers.get("Authorization"))
        g.tenant = tenants.authenticate(token) if token is not None else None
        g.auth_checked = True  # after the lookup: a database error is not remembered
    return g.tenant


def require_key() -> None:
    """`before_request` hook: set `g.tenant` or refuse with 401."""
    if token_from_header(request.headers.get("Authorization")) is None:
        raise ApiError(401, "UNAUTHORIZED", "missing or malformed bearer token")
    if authenticated() is None:
        raise ApiError(401, "UNAUTHORIZED", "unknown API key")


def requires(area: str):
    """A `before_request` hook: a valid key holding `<area>:read` (GET) or `<area>:write`."""

    def check() -> None:
        if request.method == "OPTIONS":
            return  # a CORS preflight carries no credentials; it reads nothing
        require_key()
        scope = f"{area}:{'read' if request.method in ('GET', 'HEAD') else 'write'}"
        if not g.tenant.allows(scope):
            raise ApiError(
                403,
                "FORBIDDEN",
                f"this key lacks the {scope} scope",
                {"scope": [f"requires {scope}"]},
            )

    return check


def requires_admin() -> None:
    """Refuse (403) a key without the admin scope: for the routes that change how the
    tenant's work is scheduled."""
    if not g.tenant.allows("admin"):
        raise ApiError(403, "FORBIDDEN", "this key lacks the admin scope",
                       {"scope": ["requires admin"]})


def current_tenant() -> TenantRef:
    """The tenant of this request's key."""
    return g.tenant

"""Rate limits on `/api/v1` (Flask-Limiter, counters in Redis, shared by replicas).

Two buckets, never both for one request: a verified key counts against its own
(`RATE_LIMIT`, named by the key's id), and a request without a valid key (none, a bad
one, a revoked one) against its client address's (`AUTH_FAIL_LIMIT`). So random tokens
all land in their address's bucket instead of each getting a fresh one, and a valid key
is never slowed down by failures from the address it shares.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.middleware.proxy_fix import ProxyFix

from api.auth import authenticated
from api.errors import error_response
from app.config import Settings

# Each bucket is shared by every route of every blueprint (Flask-Limiter's default is a
# bucket per route, which would multiply the limit by the number of routes).
KEYS_SCOPE = "api-keys"
AUTH_FAILURES_SCOPE = "auth-failures"


def _preflight() -> bool:
    return request.method == "OPTIONS"  # a CORS preflight carries no credentials


def _key_id() -> str:
    tenant = authenticated()
    return f"key:{tenant.key_id}" if tenant is not None else "key:-"


def _address() -> str:
    # `remote_addr` is the peer unless TRUSTED_PROXIES made ProxyFix read X-Forwarded-For.
    return "addr:" + (request.remote_addr or "-")


def _unverified() -> bool:
    return _preflight() or authenticated() is None


def _verified() -> bool:
    return _preflight() or authenticated() is not None


def install(app: Flask, settings: Settings, *blueprints: Blueprint) -> Limiter:
    """Limit every route of `blueprints`: `rate_limit` per verified key, `auth_fail_limit`
    per client address for requests without a valid key."""
    if settings.trusted_proxies > 0:
        # Only the hops we were told of may set the client's address; anything further
        # left in X-Forwarded-For is the client's own writing.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)
    limiter = Limiter(
        _address,
        app=app,
        storage_uri=settings.redis_url,
        key_prefix=f"{settings.channel_prefix}:ratelimit",
        strategy="moving-window",
        # No X-RateLimit-* on every answer: reading the window for them was a second Redis
        # round trip per request. A refusal says when to come back (`Retry-After`).
        headers_enabled=False,
        # Redis away: serve rather than refuse (the limit is a guard, not the truth).
        swallow_errors=True,
    )

    @app.errorhandler(RateLimitExceeded)
    def _limited(exc: RateLimitExceeded):
        response = error_response(429, "RATE_LIMITED", exc.description or exc.name)
        breached = limiter.current_limit  # its window read now, for the refusal only
        retry_after = breached.reset_at - int(time.time()) if breached is not None else 1
        response.headers["Retry-After"] = str(max(1, retry_after))
        return response
    for bp in blueprints:
        limiter.shared_limit(
            settings.rate_limit, KEYS_SCOPE, key_func=_key_id, exempt_when=_unverified
        )(bp)
        limiter.shared_limit(
            settings.auth_fail_limit,
            AUTH_FAILURES_SCOPE,
            key_func=_address,
            exempt_when=_verified,
        )(bp)
    return limiter

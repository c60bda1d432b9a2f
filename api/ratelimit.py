"""Per-key rate limits on `/api/v1` (Flask-Limiter, counters in Redis, shared by replicas)."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Flask, request
from flask_limiter import Limiter

from api.auth import token_from_header
from app.config import Settings


def _key() -> str:
    # The key's hash, never the secret itself, names the counter in Redis.
    token = token_from_header(request.headers.get("Authorization"))
    if token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "-")


def install(app: Flask, settings: Settings, *blueprints: Blueprint) -> Limiter:
    """Limit every route of `blueprints` to `settings.rate_limit` per key."""
    limiter = Limiter(
        _key,
        app=app,
        storage_uri=settings.redis_url,
        key_prefix=f"{settings.channel_prefix}:ratelimit",
        strategy="moving-window",
        headers_enabled=True,  # Retry-After and X-RateLimit-* on every answer
        # Redis away: serve rather than refuse (the limit is a guard, not the truth).
        swallow_errors=True,
    )
    for bp in blueprints:
        limiter.limit(settings.rate_limit)(bp)
    return limiter

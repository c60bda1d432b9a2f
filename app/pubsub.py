"""Redis pub/sub: the client and the channel names (publishing is `app/outbox/publish.py`)."""

from __future__ import annotations

import redis

_client: redis.Redis | None = None
_prefix = "orchestra"


def init(redis_url: str, prefix: str, timeout_s: float = 1.0) -> redis.Redis:
    """Create this process's Redis client; channels are named under `prefix`."""
    global _client, _prefix
    _client = redis.Redis.from_url(
        redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )
    _prefix = prefix
    return _client


def client() -> redis.Redis:
    """This process's Redis client; `init()` must have run."""
    if _client is None:
        raise RuntimeError("app.pubsub.init() was not called in this process")
    return _client


def prefix() -> str:
    """The prefix of every channel and key of this deployment (`CHANNEL_PREFIX`)."""
    return _prefix


def channel(tenant: str) -> str:
    """The channel that carries every event of one tenant."""
    return f"{_prefix}:events:{tenant}"


def channel_pattern() -> str:
    """The pattern a relay subscribes to: every tenant's channel."""
    return f"{_prefix}:events:*"

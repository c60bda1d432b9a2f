"""The beat's periodic sweep: outbox, due and lost dispatches, orphaned and overdue jobs."""

from __future__ import annotations

import redis
from celery import shared_task

from app import config, sweeps
from app.outbox.names import SWEEP

_broker: redis.Redis | None = None


def _broker_redis() -> redis.Redis | None:
    # Only a Redis broker can lose its messages in a restart we can detect by a marker.
    global _broker
    url = config.current().effective_broker_url
    if _broker is None and url.startswith(("redis://", "rediss://", "unix://")):
        _broker = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _broker


@shared_task(name=SWEEP)
def sweep():
    """One pass of every sweep; returns what each did (for the logs)."""
    return sweeps.run_all(_broker_redis())

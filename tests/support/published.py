"""Events published straight to Redis, as a worker would after commit: for relay tests that
need a stream of events (or a gap) without running jobs."""

from __future__ import annotations

import json
import uuid

import redis


def envelope(tenant: str, subject_id: str, seq: int, **payload) -> dict:
    """A `job.progress.updated` envelope of `subject_id` at `seq`, with `payload`."""
    return {
        "event_id": str(uuid.uuid4()), "event_type": "job.progress.updated", "seq": seq,
        "timestamp": "2026-01-01T00:00:00.000Z", "source_service": "test",
        "subject": {"type": "job", "id": subject_id}, "payload": payload,
        "metadata": {"tenant": tenant, "correlation_id": None, "card_id": None, "version": "1.0"},
    }


def publish(settings, envelopes: list[dict]) -> None:
    """Publish on each envelope's tenant channel, in one pipeline."""
    pipe = redis.Redis.from_url(settings.redis_url).pipeline(transaction=False)
    for env in envelopes:
        pipe.publish(f"{settings.channel_prefix}:events:{env['metadata']['tenant']}",
                     json.dumps(env))
    pipe.execute()

"""Events to Redis: published after commit, marked in Postgres; the sweep for what was not."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import Connection, select, update

from app import db, events, pubsub, telemetry
from app.models import Event

log = logging.getLogger(__name__)


def publish(envelopes: list[dict], observations: list[tuple[str, dict]] = ()) -> None:
    """Publish envelopes in one pipelined round trip (which also counts them for /metrics,
    with any histogram `observations` of the same work); raises `redis.RedisError` on
    failure. With observations the pipeline is a MULTI, which histograms need (a bucket and
    its sum move together) and publishing does not mind."""
    if not envelopes:
        return
    pipe = pubsub.client().pipeline(transaction=bool(observations))
    for env in envelopes:
        pipe.publish(
            pubsub.channel(env["metadata"]["tenant"]), json.dumps(env, separators=(",", ":"))
        )
    telemetry.count_published(pipe, envelopes)
    for label, values in observations:
        telemetry.add_observation(pipe, label, values)
    pipe.execute()


def try_publish(envelopes: list[dict], observations: list[tuple[str, dict]] = ()) -> list[str]:
    """Publish after commit; the ids published, none (logged) if Redis would not take them."""
    try:
        publish(envelopes, observations)
    except redis.RedisError as exc:
        log.warning("publish failed, %d events left to the sweep: %s", len(envelopes), exc)
        return []
    return [e["event_id"] for e in envelopes]


def mark_published(conn: Connection, event_ids: list[str]) -> None:
    """Take events out of the outbox."""
    if event_ids:
        conn.execute(
            update(Event)
            .where(Event.id.in_([uuid.UUID(i) for i in event_ids]))
            .values(published_at=datetime.now(UTC))
        )


def publish_pending(grace_s: float, limit: int = 500) -> int:
    """Publish events committed but not yet published (older than `grace_s`); return the count.

    Runs from the beat sweep. Rows are locked (SKIP LOCKED) so two sweeps never
    publish the same batch; subscribers drop duplicates by `seq` anyway.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    with db.transaction() as conn:
        rows = conn.execute(
            select(*events.ENVELOPE_COLUMNS)
            .where(Event.published_at.is_(None), Event.created_at < cutoff)
            .order_by(Event.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        envelopes = [events.envelope(r) for r in rows]
        try:
            publish(envelopes)
        except redis.RedisError as exc:
            log.warning("outbox sweep: redis unavailable, %d events wait: %s", len(rows), exc)
            return 0
        mark_published(conn, [e["event_id"] for e in envelopes])
    if envelopes:
        log.info("outbox sweep published %d events", len(envelopes))
    return len(envelopes)

"""The outbox's sweeps: what the happy path left in Postgres, published or sent again.

Every registered `Sendable` (jobs, agent commands) is swept the same way: rows due and not
sent, rows whose message the broker lost (a Redis restarted empty; a message dropped
between its queue and `unacked`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func, select, update

from app import config, db
from app.outbox import broker as broker_state
from app.outbox.publish import publish_pending
from app.outbox.send import Sendable, registered, send_and_mark

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def dispatch_due(sendable: Sendable, limit: int = 500) -> int:
    """Send every row of this kind that is due and not yet on the broker; return how many."""
    now = _now()
    settled = now - timedelta(seconds=config.current().outbox_grace_s)
    with db.transaction() as conn:
        rows = conn.execute(sendable.due(now, settled, limit)).mappings().all()
        sent = send_and_mark(conn, sendable, [sendable.row(r) for r in rows])
    if sent:
        log.info("dispatch sweep sent %d %ss", sent, sendable.name)
    return sent


def _mark_unsent(conn, table, *conditions) -> int:
    """Put matching rows back in the outbox for the dispatch sweep, with a new token: the
    message thought lost, should it turn up after all, can then claim nothing."""
    return conn.execute(
        update(table)
        .where(*conditions)
        .values(dispatched_at=None, dispatch_token=func.gen_random_uuid())
    ).rowcount


def redispatch_if_broker_lost(broker: redis.Redis) -> int:
    """If the broker lost its data (a Redis restart without persistence), send again.

    A marker key lives in the broker's Redis; when it is gone, every message sent before
    may be gone too, so every waiting row is marked undispatched for `dispatch_due`.
    Duplicates are harmless: a message claims its row only with the current token.
    """
    key = f"{config.current().channel_prefix}:broker-epoch"
    if not broker.set(key, uuid.uuid4().hex, nx=True):
        return 0
    with db.transaction() as conn:
        count = sum(
            _mark_unsent(conn, s.table, s.waiting, s.table.c.dispatched_at.isnot(None))
            for s in registered()
        )
    if count:
        log.warning("broker epoch marker missing: %d jobs/commands will be sent again", count)
    return count


def redispatch_lost_messages(broker: redis.Redis) -> int:
    """Send again what waits in Postgres as sent long ago but the broker no longer holds.

    Runs at most every half WORKER_LOST_REDELIVERY_S (a lock key in the broker): it reads
    the queues, which costs as much as the backlog is long.
    """
    settings = config.current()
    every = max(1, int(settings.worker_lost_redelivery_s / 2))
    if not broker.set(f"{settings.channel_prefix}:lost-check", 1, nx=True, ex=every):
        return 0
    stale = _now() - timedelta(seconds=settings.worker_lost_redelivery_s)
    with db.transaction() as conn:
        waiting = {
            str(row_id): (s, row_id)
            for s in registered()
            for row_id in conn.execute(
                select(s.table.c.id).where(s.waiting, s.table.c.dispatched_at < stale)
            ).scalars()
        }
    if not waiting:
        return 0
    queues = list(dict.fromkeys(q for s in registered() for q in s.queues))
    held = broker_state.held_row_ids(broker, queues)
    lost = [waiting[i] for i in waiting.keys() - held]
    with db.transaction() as conn:
        for s in registered():
            ids = [row_id for kind, row_id in lost if kind is s]
            if ids:
                table = s.table
                _mark_unsent(conn, table, table.c.id.in_(ids), table.c.dispatched_at < stale)
    if lost:
        ids = [str(row_id) for _, row_id in lost[:5]]
        log.warning("broker lost %d messages (%s): sending them again", len(lost), ids)
    return len(lost)


def steps(broker: redis.Redis | None) -> dict[str, Callable[[], object]]:
    """The outbox's part of one beat pass, by name (each run isolated by the caller)."""
    grace = config.current().outbox_grace_s
    out: dict[str, Callable[[], object]] = {
        "published": lambda: publish_pending(grace),
        "redispatched": lambda: redispatch_if_broker_lost(broker) if broker else 0,
        "lost_messages": lambda: redispatch_lost_messages(broker) if broker else 0,
    }
    for s in registered():
        out[f"dispatched_{s.name}s"] = lambda s=s: dispatch_due(s)
    return out

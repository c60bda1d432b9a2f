"""Getting events to one subscription: in order, no duplicate, gaps filled, replays paged.

The listener calls `route()` and never waits on Postgres: an event that needs no query (the
next `seq` of a subject, or a duplicate) is sent at once; anything else (a gap to fill) and
every replay or catch-up is queued in the subscription's inbox and worked through, in order,
by a greenlet of the subscription's own (`_work`). So one slow query delays one client, and
that client's events stay in `seq` order since everything after it waits behind it.

Replays are paged: each page is one short query (its own transaction) of at most
`limits.page` events, and the next page is read only once the client's send queue has room
for it, so a 10,000-event subject is neither one response nor one long transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from api.relay import sockets
from api.relay.registry import (
    CLOCK_MARGIN,
    DELIVERIES,
    REPLAY_PAGES,
    Subscription,
    limits,
    registry,
    socketio,
)
from app import db, events
from app.agents import scopes
from app.errors import Unavailable

log = logging.getLogger(__name__)

# How long a replay waits for a client to make room in its send queue before dropping it
# (Engine.IO itself gives up on a silent client after its ping interval plus timeout).
STALL_S = 30.0
_ROOM_POLL_S = 0.02


@dataclass
class Replay:
    """A subscribe's replay: done once every page went out (or `error` says why not)."""

    subject: tuple[str, str]
    done: object = field(default_factory=lambda: socketio.server.eio.create_event())
    error: Unavailable | None = None


def _subject(envelope: dict) -> tuple[str, str]:
    return envelope["subject"]["type"], envelope["subject"]["id"]


def _send(sub: Subscription, envelope: dict) -> bool:
    """Queue one event for the client, or drop the client if it owes too much already."""
    owed = sockets.pending(sub.sid)
    if owed is None or sub.closed:
        return False
    if owed >= limits.send_queue_max:
        sub.closed = True
        sockets.drop(sub.sid, "send_queue", abort=True)
        return False
    # Replays, gap fills and live events all pass here: the one place a key without
    # `jobs:read` loses an execution's job result.
    envelope = scopes.envelope_for(registry.tenants.get(sub.sid), envelope)
    socketio.emit("event", envelope, to=sub.sid)
    DELIVERIES.inc()
    return True


def _wait_for_room(sub: Subscription, room: int) -> bool:
    """Wait until the client's send queue can take `room` more packets (False: it is gone).

    Engine.IO tells no one when a socket's writer drains its queue, so this polls its length.
    """
    deadline = time.monotonic() + STALL_S
    while True:
        owed = sockets.pending(sub.sid)
        if owed is None or sub.closed:
            return False
        if owed + room <= limits.send_queue_max:
            return True
        if time.monotonic() > deadline:
            sub.closed = True
            sockets.drop(sub.sid, "send_queue", abort=True)
            return False
        socketio.sleep(_ROOM_POLL_S)


def send_range(
    sub: Subscription,
    subject: tuple[str, str],
    since: int,
    until: int | None = None,
    after: datetime | None = None,
) -> bool:
    """Send the stored events of `subject` with `since < seq <= until`, page by page."""
    page = limits.page
    while True:
        if not _wait_for_room(sub, page):
            return False
        with db.transaction() as conn:
            rows = events.for_subject(conn, *subject, since, until, after, limit=page)
        REPLAY_PAGES.inc()
        for envelope in rows:
            if not _send(sub, envelope):
                return False
            since = sub.last[subject] = envelope["seq"]
        if len(rows) < page:
            return True


def _deliver(sub: Subscription, envelope: dict) -> None:
    """Send one live event, first filling the gap before it from Postgres (in the worker)."""
    subject, seq = _subject(envelope), envelope["seq"]
    last = sub.last.get(subject)
    if last is not None and seq <= last:
        return
    if seq > (last or 0) + 1:
        # What was published while we were away, or (first sight of a subject in a tenant
        # or card room) its earlier events since this client subscribed.
        after = sub.started_at if last is None else None
        if not send_range(sub, subject, last or 0, seq - 1, after):
            return
    if _send(sub, envelope):
        sub.last[subject] = seq


def _catch_up(sub: Subscription) -> None:
    """Send every stored event of the subscription's known subjects it has not yet sent."""
    for subject, last in list(sub.last.items()):
        if not send_range(sub, subject, last):
            return


def _resume(sub: Subscription, lost_at: datetime) -> None:
    """After the Redis listener was away since `lost_at`: send what the subscription missed.

    A job or agent room knows its subject: catch up from its last `seq`. A tenant or card room
    may have missed subjects it never saw: replay the room's events since the loss through
    `_deliver`, which drops what was sent and fills what was not.
    """
    if sub.tenant_id is None:
        _catch_up(sub)
        return
    with db.transaction() as conn:
        missed = events.for_tenant(conn, sub.tenant_id, lost_at - CLOCK_MARGIN, sub.card_id)
    for envelope in missed:
        if sub.closed:
            return
        if envelope["subject"]["type"] in sub.kinds:
            _deliver(sub, envelope)


def _replay(sub: Subscription, job: Replay) -> None:
    try:
        send_range(sub, job.subject, sub.last.get(job.subject, 0))
    except Unavailable as exc:
        job.error = exc
    finally:
        job.done.set()


def _run(sub: Subscription, item: tuple) -> None:
    kind = item[0]
    if kind == "event":
        _deliver(sub, item[1])
    elif kind == "replay":
        _replay(sub, item[1])
    elif kind == "resume":
        _resume(sub, item[1])


def _release(sub: Subscription) -> None:
    """A closed subscription's leftover work: nothing is sent, but no replay is left waiting."""
    for item in sub.inbox:
        if item[0] == "replay":
            item[1].done.set()
    sub.inbox.clear()


def _work(sub: Subscription) -> None:
    """Work through the subscription's inbox, oldest first, until it is empty."""
    while True:
        with sub.lock:
            if sub.closed:
                _release(sub)
            if not sub.inbox:
                sub.busy = False
                return
            item = sub.inbox.popleft()
        try:
            _run(sub, item)
        except Exception:  # noqa: BLE001 - one failed item must not stop the next ones
            log.exception("relay: %s work for %s in %s failed", item[0], sub.sid, sub.room)


def _enqueue_locked(sub: Subscription, item: tuple) -> None:
    if len(sub.inbox) >= limits.send_queue_max:  # it owes that much already: drop it
        sub.closed = True
        sockets.drop(sub.sid, "send_queue", abort=True)
        return
    sub.inbox.append(item)
    if not sub.busy:
        sub.busy = True
        socketio.start_background_task(_work, sub)


def enqueue(sub: Subscription, item: tuple) -> None:
    """Queue work for the subscription's greenlet (started if idle)."""
    with sub.lock:
        if not sub.closed:
            _enqueue_locked(sub, item)


def route(sub: Subscription, envelope: dict) -> None:
    """From the listener: send an in-order event now, queue anything that needs a query."""
    subject, seq = _subject(envelope), envelope["seq"]
    with sub.lock:
        if sub.closed:
            return
        if not sub.busy:
            last = sub.last.get(subject)
            if last is not None and seq <= last:
                return  # a duplicate
            if seq == (last or 0) + 1:
                if _send(sub, envelope):
                    sub.last[subject] = seq
                return
        _enqueue_locked(sub, ("event", envelope))


def start_replay(sub: Subscription, subject: tuple[str, str]) -> Replay:
    """Queue the subscribe's replay as the subscription's first work (before it is registered,
    so live events that arrive meanwhile wait behind it)."""
    job = Replay(subject)
    with sub.lock:
        sub.inbox.append(("replay", job))
        sub.busy = True
    return job


def run_replay(sub: Subscription) -> None:
    """Start the greenlet of a subscription whose replay `start_replay` queued."""
    socketio.start_background_task(_work, sub)

"""Resumable streams of events: per subscription, in order, no duplicate, gaps filled, replays
paged, caught up after a loss of the live feed.

A `Stream` knows nothing of the transport. The relay gives it its seams: `send` (one event to
one client, False once the client is gone), `make_room` (wait until the client can take so
many more events), `drop` (the client owes too much), `spawn` (run a function concurrently:
a greenlet in the relay) and `new_event` (what a subscribe waits on). Stored events come from
`read_subject` / `read_tenant` (Postgres through `app.events` unless told otherwise), so the
whole logic runs in a unit test with fakes.

The live feed calls `route()` and never waits on a read: an event that needs none (the next
`seq` of a subject, or a duplicate) is sent at once; anything else (a gap to fill) and every
replay or catch-up is queued in the subscription's inbox and worked through, in order, by a
worker of the subscription's own (`_work`, started with `spawn`). So one slow read delays one
client, and that client's events stay in `seq` order since everything after it waits behind it.

Replays are paged: each page is one short read of at most `page()` events, and the next page
is read only once the client can take it (`make_room`), so a 10,000-event subject is neither
one response nor one long transaction.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app import db, events, tenants
from app.agents import scopes
from app.errors import Unavailable
from app.streams.rooms import readable_types

log = logging.getLogger(__name__)

Subject = tuple[str, str]  # (subject type, subject id)

# Event times come from the clocks of the processes that wrote them; reading "since a moment"
# a little earlier than that moment costs at most a few extra events, never a missing one.
CLOCK_MARGIN = timedelta(seconds=2)


class Positions(OrderedDict):
    """Last `seq` sent per subject, forgetting the least recently active beyond a bound.

    A tenant room sees every job of the tenant; without a bound a long-lived client's
    positions would grow forever. A duplicate of a subject silent for that long is unlikely.
    """

    MAX_SUBJECTS = 10_000

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.MAX_SUBJECTS:
            self.popitem(last=False)


@dataclass(eq=False)
class Subscription:
    """One client in one room, with the last `seq` it was sent of each subject.

    Rooms of a transport broadcast blindly; a resumable stream needs per-client positions to
    drop duplicates and fill gaps. Work that needs a read (the replay, a gap fill, a catch-up)
    waits in `inbox` for the subscription's own worker, so the live feed never waits on a
    query and the subscription's events still go out in order.
    """

    client: str  # the transport's id of the client (the relay's Socket.IO sid)
    room: str
    since: int = 0
    # The subject types this client's key may read (`job`, `agent`): a tenant room sends
    # only those.
    subject_types: frozenset[str] = frozenset({"job", "agent"})
    # The client's key: every event sent goes through `scopes.envelope_for(key, ...)`.
    key: tenants.TenantRef | None = None
    # For a room of many subjects (tenant, card): whose events, and since when. Its stream
    # starts at subscription time and is complete from then on.
    tenant_id: uuid.UUID | None = None
    card_id: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC) - CLOCK_MARGIN)
    last: Positions = field(default_factory=Positions)
    # Work not done yet, oldest first; `busy` while a worker goes through it. The lock
    # guards only these two (never held over a read or a send).
    inbox: deque = field(default_factory=deque)
    busy: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def subscription(
    client: str, room: str, subject: Subject | None, since: int, key: tenants.TenantRef
) -> Subscription:
    """A new subscription of `key`'s client to `room`, as `resolve_room` named it.

    A subject's room resumes after `since`; a tenant or card room has no replay: it is
    complete from now on.
    """
    sub = Subscription(client, room, since, readable_types(key), key=key)
    if subject is None:
        sub.tenant_id = key.id
        sub.card_id = room.split(":", 2)[2] if room.startswith("card:") else None
    else:
        sub.last[subject] = since
    return sub


@dataclass
class Replay:
    """A subscribe's replay: `done` is set once every page went out (or `error` says why not)."""

    subject: Subject
    done: object
    error: Unavailable | None = None


def stored_subject(
    subject: Subject,
    since: int,
    until: int | None = None,
    after: datetime | None = None,
    *,
    limit: int,
) -> list[dict]:
    """A page of one subject's stored events, read in a short transaction of its own."""
    with db.transaction() as conn:
        return events.for_subject(conn, *subject, since, until, after, limit=limit)


def stored_tenant(tenant_id: uuid.UUID, after: datetime, card_id: str | None) -> list[dict]:
    """A tenant's (or one card's) stored events since `after`, oldest first."""
    with db.transaction() as conn:
        return events.for_tenant(conn, tenant_id, after, card_id)


def _subject(envelope: dict) -> Subject:
    return envelope["subject"]["type"], envelope["subject"]["id"]


class Stream:
    """The resumable-stream logic over a transport's seams (see the module's docstring)."""

    def __init__(
        self,
        send: Callable[[Subscription, dict], bool],
        *,
        make_room: Callable[[Subscription, int], bool],
        drop: Callable[[Subscription], None],
        spawn: Callable[..., object],
        new_event: Callable[[], object] = threading.Event,
        read_subject: Callable[..., list[dict]] = stored_subject,
        read_tenant: Callable[..., list[dict]] = stored_tenant,
        page: Callable[[], int] = lambda: 500,
        backlog_max: Callable[[], int] = lambda: 1000,
    ) -> None:
        self._transmit, self._make_room, self._drop = send, make_room, drop
        self._spawn, self._new_event = spawn, new_event
        self._read_subject, self._read_tenant = read_subject, read_tenant
        # Read at each use: the relay sets its bounds once its settings are known.
        self._page, self._backlog_max = page, backlog_max

    # -- the live feed --------------------------------------------------------------------

    def fan_out(
        self,
        envelope: dict,
        rooms: Iterable[str],
        subscriptions_of: Callable[[str], Iterable[Subscription]],
    ) -> int:
        """Route one live event to every subscription of its `rooms` (`rooms_of(envelope)`)
        whose key may read its subject type; return how many. One subscription's failure
        never stops the others."""
        subject_type, count = envelope["subject"]["type"], 0
        for room in rooms:
            for sub in subscriptions_of(room):
                if subject_type not in sub.subject_types:
                    continue
                count += 1
                try:
                    self.route(sub, envelope)
                except Exception:  # noqa: BLE001 - one client's failure must not stop the stream
                    log.exception("stream: delivery to %s in %s failed", sub.client, room)
        return count

    def route(self, sub: Subscription, envelope: dict) -> None:
        """Send an in-order event now; queue anything that needs a read (or waits behind one)."""
        subject, seq = _subject(envelope), envelope["seq"]
        with sub.lock:
            if sub.closed:
                return
            if not sub.busy:
                last = sub.last.get(subject)
                if last is not None and seq <= last:
                    return  # a duplicate
                if seq == (last or 0) + 1:
                    if self._send(sub, envelope):
                        sub.last[subject] = seq
                    return
            self._enqueue_locked(sub, ("event", envelope))

    def resume(self, sub: Subscription, lost_at: datetime) -> None:
        """The live feed was away since `lost_at`: queue the catch-up of what `sub` missed."""
        self._enqueue(sub, ("resume", lost_at))

    # -- a subscribe's replay -------------------------------------------------------------

    def start_replay(self, sub: Subscription, subject: Subject) -> Replay:
        """Queue the subscribe's replay as the subscription's first work (before it is
        registered, so live events that arrive meanwhile wait behind it)."""
        job = Replay(subject, self._new_event())
        with sub.lock:
            sub.inbox.append(("replay", job))
            sub.busy = True
        return job

    def run_replay(self, sub: Subscription) -> None:
        """Start the worker of a subscription whose replay `start_replay` queued."""
        self._spawn(self._work, sub)

    # -- sending ----------------------------------------------------------------------------

    def _send(self, sub: Subscription, envelope: dict) -> bool:
        """One event to the client, as its key may see it (False: the client is gone)."""
        if sub.closed:
            return False
        # Replays, gap fills and live events all pass here: the one place a key without
        # `jobs:read` loses an execution's job result.
        return self._transmit(sub, scopes.envelope_for(sub.key, envelope))

    def send_range(
        self,
        sub: Subscription,
        subject: Subject,
        since: int,
        until: int | None = None,
        after: datetime | None = None,
    ) -> bool:
        """Send the stored events of `subject` with `since < seq <= until`, page by page."""
        page = self._page()
        while True:
            if sub.closed or not self._make_room(sub, page):
                return False
            rows = self._read_subject(subject, since, until, after, limit=page)
            for envelope in rows:
                if not self._send(sub, envelope):
                    return False
                since = sub.last[subject] = envelope["seq"]
            if len(rows) < page:
                return True

    def _deliver(self, sub: Subscription, envelope: dict) -> None:
        """Send one event, first filling the gap before it from the stored events."""
        subject, seq = _subject(envelope), envelope["seq"]
        last = sub.last.get(subject)
        if last is not None and seq <= last:
            return
        if seq > (last or 0) + 1:
            # What was published while we were away, or (first sight of a subject in a tenant
            # or card room) its earlier events since this client subscribed.
            after = sub.started_at if last is None else None
            if not self.send_range(sub, subject, last or 0, seq - 1, after):
                return
        if self._send(sub, envelope):
            sub.last[subject] = seq

    def _catch_up(self, sub: Subscription) -> None:
        """Send every stored event of the subscription's known subjects it has not yet sent."""
        for subject, last in list(sub.last.items()):
            if not self.send_range(sub, subject, last):
                return

    def _resume(self, sub: Subscription, lost_at: datetime) -> None:
        """Send what the subscription missed while the live feed was away since `lost_at`.

        A job or agent room knows its subject: catch up from its last `seq`. A tenant or card
        room may have missed subjects it never saw: replay the room's events since the loss
        through `_deliver`, which drops what was sent and fills what was not.
        """
        if sub.tenant_id is None:
            self._catch_up(sub)
            return
        missed = self._read_tenant(sub.tenant_id, lost_at - CLOCK_MARGIN, sub.card_id)
        for envelope in missed:
            if sub.closed:
                return
            if envelope["subject"]["type"] in sub.subject_types:
                self._deliver(sub, envelope)

    def _replay(self, sub: Subscription, job: Replay) -> None:
        try:
            self.send_range(sub, job.subject, sub.last.get(job.subject, 0))
        except Unavailable as exc:
            job.error = exc
        finally:
            job.done.set()

    # -- the subscription's worker -----------------------------------------------------------

    def _run(self, sub: Subscription, item: tuple) -> None:
        what = item[0]
        if what == "event":
            self._deliver(sub, item[1])
        elif what == "replay":
            self._replay(sub, item[1])
        elif what == "resume":
            self._resume(sub, item[1])

    @staticmethod
    def _release(sub: Subscription) -> None:
        """A closed subscription's leftover work: nothing is sent, but no replay is left
        waiting."""
        for item in sub.inbox:
            if item[0] == "replay":
                item[1].done.set()
        sub.inbox.clear()

    def _work(self, sub: Subscription) -> None:
        """Work through the subscription's inbox, oldest first, until it is empty."""
        while True:
            with sub.lock:
                if sub.closed:
                    self._release(sub)
                if not sub.inbox:
                    sub.busy = False
                    return
                item = sub.inbox.popleft()
            try:
                self._run(sub, item)
            except Exception:  # noqa: BLE001 - one failed item must not stop the next ones
                log.exception("stream: %s work for %s in %s failed", item[0], sub.client, sub.room)

    def _enqueue_locked(self, sub: Subscription, item: tuple) -> None:
        if len(sub.inbox) >= self._backlog_max():  # it owes that much already: drop it
            sub.closed = True
            self._drop(sub)
            return
        sub.inbox.append(item)
        if not sub.busy:
            sub.busy = True
            self._spawn(self._work, sub)

    def _enqueue(self, sub: Subscription, item: tuple) -> None:
        """Queue work for the subscription's worker (started if idle)."""
        with sub.lock:
            if not sub.closed:
                self._enqueue_locked(sub, item)

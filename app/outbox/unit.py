"""The unit of work: state, events and what to send commit together; then we act.

After commit, events are published and due rows (job runs, agent commands) sent to the
broker; what fails here stays in Postgres (`events.published_at` / `dispatched_at` null)
for the beat sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from app import db, events, telemetry
from app.outbox import marks
from app.outbox.publish import try_publish
from app.outbox.send import Sendable, try_send_all

log = logging.getLogger(__name__)


@dataclass
class UnitOfWork:
    """What one transaction did, to be acted on after it commits."""

    conn: Connection | None = None
    source: str = "api"
    events: list[dict] = field(default_factory=list)
    to_send: list[tuple[Sendable, Any]] = field(default_factory=list)
    # Histogram observations (`telemetry.attempt_values`) by label, counted in the round trip
    # that publishes the events.
    observations: list[tuple[str, dict]] = field(default_factory=list)
    # What to call once it committed and its events and rows went out (an admission pass
    # when it made or freed a job's slot), each once.
    callbacks: list[Callable[[], object]] = field(default_factory=list)

    def record(self, subject: events.Subject, event_type: str, payload: dict) -> dict:
        """Record an event in this transaction; it is published after commit."""
        env = events.record(self.conn, subject, event_type, payload, self.source)
        self.events.append(env)
        return env

    def record_first(self, firsts: list[tuple[events.Subject, dict]], event_type: str) -> list:
        """Record the first event of each of many subjects made in this transaction, in two
        statements (`events.record_first`); published after commit."""
        envelopes = events.record_first(self.conn, firsts, event_type, self.source)
        self.events.extend(envelopes)
        return envelopes

    def record_many(self, items: list[tuple[events.Subject, str, dict]]) -> list:
        """Record many events `(subject, type, payload)` in two statements
        (`events.record_many`); published after commit, in that order."""
        envelopes = events.record_many(self.conn, items, self.source)
        self.events.extend(envelopes)
        return envelopes

    def observe_after_commit(self, label: str, values: dict[str, float]) -> None:
        """Count these histogram observations with the publish that follows the commit."""
        self.observations.append((label, values))

    def send_after_commit(self, sendable: Sendable, row) -> None:
        """Send this row (a `JobRow`, a `CommandRow`) once the transaction has committed."""
        self.to_send.append((sendable, row))

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call `callback()` once the transaction has committed (once, however often asked);
        what it raises is logged, never the caller's failure: the work it does is also the
        beat's."""
        if callback not in self.callbacks:
            self.callbacks.append(callback)


@contextmanager
def unit_of_work(source: str) -> Iterator[UnitOfWork]:
    """Open a transaction; after it commits, publish its events and send its rows."""
    uow = UnitOfWork(source=source)
    with db.transaction() as conn:
        uow.conn = conn
        yield uow
    uow.conn = None
    _after_commit(uow)


def _after_commit(uow: UnitOfWork) -> None:
    published = try_publish(uow.events, uow.observations) if uow.events else []
    if uow.observations and not uow.events:
        for label, values in uow.observations:
            telemetry.observe(label, **values)
    sent = try_send_all(uow.to_send) if uow.to_send else []
    if published or sent:
        marks.add(published, sent)
    for callback in uow.callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - committed; the beat's sweep does it again
            log.exception("after-commit %s failed; the beat will do it",
                          getattr(callback, "__qualname__", callback))

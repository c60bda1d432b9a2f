"""The unit of work: state, events and dispatch intent commit together; then we act.

After commit, events are published and due work (job runs, agent commands) sent to the
broker; what fails here stays in Postgres (`events.published_at` / `dispatched_at` null)
for the beat sweep.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from sqlalchemy import Connection, tuple_, update

from app import db, dispatch, events, pubsub
from app.models import AgentCommand, Job

log = logging.getLogger(__name__)


@dataclass
class UnitOfWork:
    """What one transaction did, to be acted on after it commits."""

    conn: Connection | None = None
    source: str = "api"
    events: list[dict] = field(default_factory=list)
    to_send: list[tuple[str, dict]] = field(default_factory=list)

    def record(self, subject: events.Subject, event_type: str, payload: dict) -> dict:
        """Record an event in this transaction; it is published after commit."""
        env = events.record(self.conn, subject, event_type, payload, self.source)
        self.events.append(env)
        return env

    def send_after_commit(self, row: dict, what: str = "job") -> None:
        """Send this job (or agent command) to a worker once the transaction has committed."""
        self.to_send.append((what, row))


@contextmanager
def unit_of_work(source: str) -> Iterator[UnitOfWork]:
    """Open a transaction; after it commits, publish its events and send its jobs."""
    uow = UnitOfWork(source=source)
    with db.transaction() as conn:
        uow.conn = conn
        yield uow
    uow.conn = None
    _after_commit(uow)


def _after_commit(uow: UnitOfWork) -> None:
    published = _publish(uow.events)
    sent = [(what, row) for what, row in uow.to_send if try_send(what, row)]
    if published or sent:
        _marks.add(published, sent)


class _Marks:
    """Takes published events and sent jobs out of the outbox in batches, off the hot path.

    One UPDATE per batch instead of one transaction per change (a third of a job's commits).
    Marks still pending when a process dies are only a cost: the sweep publishes or sends
    those again, and subscribers (by `seq`) and workers (by token) drop the duplicates.
    Hand-written: no library batches writes for a thread-per-process outbox like this.
    """

    def __init__(self, interval_s: float = 0.05):
        self._interval = interval_s
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._events: list[str] = []
        self._jobs: list[tuple[str, dict]] = []
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, event_ids: list[str], jobs: list[tuple[str, dict]]) -> None:
        """Queue marks; a flusher thread of this process writes them shortly."""
        with self._lock:
            self._events.extend(event_ids)
            self._jobs.extend(jobs)
            if self._pid != os.getpid() or not self._thread or not self._thread.is_alive():
                self._start()

    def _start(self) -> None:
        # After a fork the parent's thread does not exist here: start one per process.
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="outbox-marks")
        self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self._interval)
            self.flush()

    def flush(self) -> None:
        """Write every queued mark now (after any flush already under way has finished)."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            event_ids, jobs, self._events, self._jobs = self._events, self._jobs, [], []
        if not event_ids and not jobs:
            return
        try:
            with db.transaction() as conn:
                events.mark_published(conn, event_ids)
                for what in SENDABLE:
                    mark_dispatched(conn, what, [row for w, row in jobs if w == what])
        except Exception as exc:  # noqa: BLE001 - the flusher must live; the sweep redoes it
            log.warning("could not mark %d events / %d jobs: %s", len(event_ids), len(jobs), exc)


_marks = _Marks()
flush_marks = _marks.flush
atexit.register(flush_marks)


def _publish(envelopes: list[dict]) -> list[str]:
    try:
        pubsub.publish(envelopes)
    except redis.RedisError as exc:
        log.warning("publish failed, %d events left to the sweep: %s", len(envelopes), exc)
        return []
    return [e["event_id"] for e in envelopes]


# What waits in the outbox to be sent: how to send it, and the table that marks it sent.
SENDABLE = {
    "job": (dispatch.send_job, Job.__table__),
    "command": (dispatch.send_command, AgentCommand.__table__),
}


def try_send(what: str, row: dict) -> bool:
    """Send a job run or an agent command; False (logged) if the broker would not take it."""
    try:
        SENDABLE[what][0](row)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves it to the sweep
        log.warning("dispatch of %s %s failed, left to the sweep: %s", what, row["id"], exc)
        return False
    return True


def send_and_mark(conn: Connection, what: str, rows: list[dict]) -> int:
    """Send rows the sweep found (stopping at the first the broker refuses); mark those sent."""
    sent = []
    for row in rows:
        if not try_send(what, row):
            break
        sent.append(row)
    mark_dispatched(conn, what, sent)
    return len(sent)


def mark_dispatched(conn: Connection, what: str, rows: list[dict]) -> None:
    """Record that these dispatches (id + token) reached the broker."""
    if not rows:
        return
    table = SENDABLE[what][1]
    conn.execute(
        update(table)
        .where(
            tuple_(table.c.id, table.c.dispatch_token).in_(
                [(row["id"], row["dispatch_token"]) for row in rows]
            ),
            table.c.dispatched_at.is_(None),
        )
        .values(dispatched_at=datetime.now(UTC))
    )

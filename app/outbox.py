"""The unit of work: state, events and dispatch intent commit together; then we act.

After commit, events are published and due jobs sent to the broker; what fails here
stays in Postgres (`events.published_at` / `jobs.dispatched_at` null) for the beat sweep.
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
from app.models import Job

log = logging.getLogger(__name__)


@dataclass
class UnitOfWork:
    """What one transaction did, to be acted on after it commits."""

    conn: Connection | None = None
    source: str = "api"
    events: list[dict] = field(default_factory=list)
    jobs_to_send: list[dict] = field(default_factory=list)

    def record(self, subject: events.Subject, event_type: str, payload: dict) -> dict:
        """Record an event in this transaction; it is published after commit."""
        env = events.record(self.conn, subject, event_type, payload, self.source)
        self.events.append(env)
        return env

    def send_after_commit(self, job: dict) -> None:
        """Send this job to a worker once the transaction has committed."""
        self.jobs_to_send.append(job)


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
    sent = [job for job in uow.jobs_to_send if try_send(job)]
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
        self._jobs: list[dict] = []
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, event_ids: list[str], jobs: list[dict]) -> None:
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
                mark_dispatched(conn, jobs)
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


def try_send(job: dict) -> bool:
    """Send a job to the broker; False (logged) if the broker would not take it."""
    try:
        dispatch.send_job(job)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the job to the sweep
        log.warning("dispatch of job %s failed, left to the sweep: %s", job["id"], exc)
        return False
    return True


def mark_dispatched(conn: Connection, jobs: list[dict]) -> None:
    """Record that these dispatches (id + token) reached the broker."""
    if not jobs:
        return
    conn.execute(
        update(Job)
        .where(
            tuple_(Job.id, Job.dispatch_token).in_(
                [(job["id"], job["dispatch_token"]) for job in jobs]
            ),
            Job.dispatched_at.is_(None),
        )
        .values(dispatched_at=datetime.now(UTC))
    )

"""The outbox's marks (`published_at`, `dispatched_at`), written in batches off the hot path."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

from app import db
from app.outbox.publish import mark_published
from app.outbox.send import Sendable, mark_dispatched

log = logging.getLogger(__name__)


class _Marks:
    """Takes published events and sent rows out of the outbox in batches, off the hot path.

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
        self._sent: list[tuple[Sendable, Any]] = []
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, event_ids: list[str], sent: list[tuple[Sendable, Any]]) -> None:
        """Queue marks; a flusher thread of this process writes them shortly."""
        with self._lock:
            self._events.extend(event_ids)
            self._sent.extend(sent)
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
            event_ids, sent, self._events, self._sent = self._events, self._sent, [], []
        if not event_ids and not sent:
            return
        by_kind: dict[Sendable, list] = {}
        for sendable, row in sent:
            by_kind.setdefault(sendable, []).append(row)
        try:
            with db.transaction() as conn:
                mark_published(conn, event_ids)
                for sendable, rows in by_kind.items():
                    mark_dispatched(conn, sendable, rows)
        except Exception as exc:  # noqa: BLE001 - the flusher must live; the sweep redoes it
            log.warning("could not mark %d events / %d sent: %s", len(event_ids), len(sent), exc)


_marks = _Marks()
add = _marks.add
flush = _marks.flush
atexit.register(flush)

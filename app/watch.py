"""The runs of a worker process, watched together: their cancel flags and their leases.

A run must notice soon that its job was cancelled (or given to another run), and must renew
its lease so the orphan sweep leaves it alone. Each run doing both for itself costs Postgres
a transaction per run per check: 800 a second for the io worker's 200 open streams, most of
them waiting on a model's first token. The process's `Watcher` does it for all its runs in
one statement each: every `check_s` it reads their flags (and leaves each run what it
found: `Run.check_cancelled` then reads no database), every `renew_s` it renews their
leases.

Hand-written: this is the worker's own bookkeeping of its runs (no library watches a set of
rows for a thread per process).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Watcher:
    """A thread that calls `check(runs)` every `check_s()` and `renew(runs)` every
    `renew_s()` with the runs being watched, while there are any."""

    def __init__(self, check: Callable[[list], None], renew: Callable[[list], None],
                 check_s: Callable[[], float], renew_s: Callable[[], float]):
        self._check, self._renew = check, renew
        self._check_s, self._renew_s = check_s, renew_s
        self._cond = threading.Condition()
        self._runs: set[Any] = set()
        self._pid: int | None = None

    def add(self, run) -> None:
        with self._cond:
            self._runs.add(run)
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid = os.getpid()
                threading.Thread(target=self._loop, daemon=True, name="run-watcher").start()
            self._cond.notify()

    def discard(self, run) -> None:
        with self._cond:
            self._runs.discard(run)

    def _watched(self) -> list:
        with self._cond:
            while not self._runs:
                self._cond.wait()
            return list(self._runs)

    def _loop(self) -> None:
        renewed = time.monotonic()
        while True:
            runs = self._watched()
            self._call(self._check, runs, "read the cancel flags of")
            if time.monotonic() - renewed >= self._renew_s():
                renewed = time.monotonic()
                self._call(self._renew, runs, "renew the leases of")
            time.sleep(self._check_s())

    @staticmethod
    def _call(step: Callable[[list], None], runs: list, what: str) -> None:
        try:
            step(runs)
        except Exception as exc:  # noqa: BLE001 - try again next time; the sweep is the judge
            log.warning("could not %s %d runs: %s", what, len(runs), exc)

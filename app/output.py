"""A job's streamed output: what a run appends as it goes, coalesced into events, read back.

A generator appends text (`ctx.append`) and JSON values (`ctx.append_delta`, the deltas of a
structured output). The run's `OutputStream` buffers them and a thread of its own writes
what is pending as one `job.output.appended` event (its text's `offset` in the attempt's
output, its deltas' `delta_offset`), at most every OUTPUT_FLUSH_INTERVAL_S, sooner once
OUTPUT_FLUSH_BYTES wait; the first append goes at once (time to first token). What is still
pending when the generator returns is written in the outcome's transaction, before the
status event. Each event is stored with the job's other events and published live, so a
client that subscribes late or comes back with its last `seq` is replayed every chunk once,
in order, by the same replay as any event.

The events are the output's only store: `read` assembles the current attempt's output from
them. Each chunk names its `attempt`: a run that is retried starts its output again at 0,
and a reader keeps the latest attempt's chunks only, so it never shows a mix.

Hand-written: the coalescing is this run's own (its cancel checks, its transaction).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import Integer, cast, select

from app import db, jobs, storable
from app.events import JOB_OUTPUT_APPENDED
from app.models import TERMINAL, Event
from app.storable import NotStorable
from app.tenants import TenantRef

OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"


class OutputStream:
    """One run's appended output, written by a flusher thread in coalesced chunks.

    `write(payload)` writes one chunk (`{"offset", "text"}`, with `delta_offset` and
    `deltas` when there are any) and its event, and raises what the run must stop on
    (`Cancelled`, `Superseded`); that is raised again at the generator's next append. A
    chunk whose write failed stays pending: nothing appended is dropped.
    """

    def __init__(self, write: Callable[[dict], None], interval_s: float, flush_bytes: int,
                 max_bytes: int):
        self._write = write
        self._interval, self._flush_bytes, self._max_bytes = interval_s, flush_bytes, max_bytes
        self._cond = threading.Condition()
        self._text: list[str] = []
        self._deltas: list = []
        self._pending_bytes = 0
        self.total_bytes = 0
        self.offset = 0  # characters of text written before what is pending
        self.delta_offset = 0
        self._last = -math.inf  # monotonic time of the last write
        self._failed: BaseException | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    def append(self, text: str) -> None:
        """Add text to the output."""
        storable.check_text("appended output", text, self._max_bytes)
        self._add(len(text.encode("utf-8")), text=text)

    def append_delta(self, value) -> None:
        """Add one JSON value to the output's deltas."""
        storable.check_result(value, self._max_bytes)
        self._add(len(json.dumps(value, ensure_ascii=False).encode("utf-8")), delta=[value])

    def _add(self, size: int, text: str | None = None, delta: list | None = None) -> None:
        with self._cond:
            if self._failed is not None:
                raise self._failed
            if self._stopping:
                raise RuntimeError("output appended after the generator returned")
            if self.total_bytes + size > self._max_bytes:
                raise NotStorable(OUTPUT_TOO_LARGE, f"the output is over MAX_OUTPUT_BYTES "
                                                    f"({self._max_bytes})")
            self.total_bytes += size
            self._pending_bytes += size
            if text:
                self._text.append(text)
            if delta:
                self._deltas.extend(delta)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="output")
                self._thread.start()
            self._cond.notify()

    def pending(self) -> dict | None:
        """The chunk of everything not yet written, or None (the caller holds no lock)."""
        with self._cond:
            return self._pending()

    def _pending(self) -> dict | None:
        if not self._text and not self._deltas:
            return None
        chunk = {"offset": self.offset, "text": "".join(self._text)}
        if self._deltas:
            chunk |= {"delta_offset": self.delta_offset, "deltas": list(self._deltas)}
        return chunk

    def _written(self, chunk: dict) -> None:
        """Take what `chunk` held off the pending (more may have been appended since)."""
        text = "".join(self._text)[len(chunk["text"]):]
        self._text = [text] if text else []
        deltas = chunk.get("deltas", [])
        self._deltas = self._deltas[len(deltas):]
        self.offset += len(chunk["text"])
        self.delta_offset += len(deltas)
        self._pending_bytes = len(text.encode("utf-8")) + sum(
            len(json.dumps(d, ensure_ascii=False).encode("utf-8")) for d in self._deltas)
        self._last = time.monotonic()

    def _next_chunk(self) -> dict | None:
        """Wait until a chunk is due (its interval passed, or enough bytes wait); None once
        stopping. Called with the lock held."""
        while not self._stopping:
            if self._text or self._deltas:
                left = self._last + self._interval - time.monotonic()
                if left <= 0 or self._pending_bytes >= self._flush_bytes:
                    return self._pending()
                self._cond.wait(left)
            else:
                self._cond.wait()
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                chunk = self._next_chunk()
            if chunk is None:
                return
            try:
                self._write(chunk)
            except BaseException as exc:  # noqa: BLE001 - the generator's next append raises it
                with self._cond:
                    self._failed = exc
                return
            with self._cond:
                self._written(chunk)

    def stop(self) -> dict | None:
        """Stop the flusher (a write under way finishes first); what is still pending, for
        the outcome's transaction to write. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        return self.pending()


def chunks_of(conn, job_id, attempt: int) -> list[dict]:
    """The payloads of one attempt's `job.output.appended` events, in order."""
    rows = conn.execute(
        select(Event.payload)
        .where(Event.subject_type == "job", Event.subject_id == job_id,
               Event.event_type == JOB_OUTPUT_APPENDED,
               cast(Event.payload["attempt"].astext, Integer) == attempt)
        .order_by(Event.seq)
    ).scalars()
    return list(rows)


def read(conn, job_id, attempt: int, offset: int = 0, delta_offset: int = 0) -> dict:
    """The attempt's output from `offset` (text characters) and `delta_offset` (deltas) on,
    with the offsets to continue from."""
    text, deltas = [], []
    for chunk in chunks_of(conn, job_id, attempt):
        text.append(chunk.get("text", ""))
        deltas.extend(chunk.get("deltas", []))
    whole = "".join(text)
    return {"attempt": attempt, "offset": len(whole), "text": whole[offset:],
            "delta_offset": len(deltas), "deltas": deltas[delta_offset:]}


def job_output(tenant: TenantRef, job_id, offset: int = 0, delta_offset: int = 0) -> dict:
    """One of the tenant's jobs' output so far: its latest attempt's (`GET .../output`)."""
    with db.transaction() as conn:
        job = jobs.load(conn, job_id, tenant.id)
        out = read(conn, job.id, job.attempts, offset, delta_offset)
    return {"job_id": job.id, "status": job.status, "done": job.status in TERMINAL, **out}

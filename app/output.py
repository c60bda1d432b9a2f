"""A job's streamed output: what a run appends as it goes, coalesced into events, read back.

A generator appends text (`ctx.append`) and JSON values (`ctx.append_delta`, the deltas of a
structured output). The run's `OutputStream` buffers them; the process's one `Writer` thread
writes, in rounds, what every stream of the process has pending: one statement per round
(`store_round`: each stream's chunk one `job.output.appended` event, its text's `offset` in
the attempt's output, its deltas' `delta_offset`), so 200 runs streaming at once cost
Postgres ten statements a second, not two thousand transactions. Rounds are at least
OUTPUT_FLUSH_INTERVAL_S apart
(a stream's first append waits for none when the last round is that old), sooner once a
stream holds OUTPUT_FLUSH_BYTES. What is still pending when the generator returns is
written in the outcome's transaction, before the status event. Each event is stored with
the job's other events and published live, so a client that subscribes late or comes back
with its last `seq` is replayed every chunk once, in order, by the same replay as any event.

A round writes a chunk only where its run still owns the job and nobody cancelled it; a
refused chunk stops its run at the generator's next append.

The events are the output's only store: `read` assembles the current attempt's output from
them. Each chunk names its `attempt`: a run that is retried starts its output again at 0,
and a reader keeps the latest attempt's chunks only, so it never shows a mix.

Hand-written: the coalescing across runs is this worker's own (its ownership and cancel
checks, its one statement per round).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Text, bindparam, cast, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from app import db, events, jobs, storable
from app.events import JOB_OUTPUT_APPENDED
from app.models import TERMINAL, Event
from app.outbox import marks, publish
from app.storable import NotStorable
from app.tenants import TenantRef

OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"

# `write(items)` writes each `(owner, chunk)` in one go and returns, by item index, what
# stopped the ones it did not write (`Cancelled`, `Superseded`); raising fails them all.
WriteMany = Callable[[list[tuple[Any, dict]]], dict[int, BaseException]]


class OutputStream:
    """One run's appended output, pending until its process's `Writer` writes it.

    A chunk is `{"offset", "text"}`, with `delta_offset` and `deltas` when there are any.
    What a round's write raised for this stream is raised again at the generator's next
    append (and by `raise_failure`); its chunk stays pending: nothing appended is dropped.
    """

    def __init__(self, owner, writer: Writer, max_bytes: int):
        self.owner = owner  # what the writer's `write` is given with each chunk (the run)
        self._writer, self._max_bytes = writer, max_bytes
        self._cond = threading.Condition()
        self._text: list[str] = []
        self._deltas: list = []
        self.pending_bytes = 0
        self.total_bytes = 0
        self.offset = 0  # characters of text written before what is pending
        self.delta_offset = 0
        self._in_flight: dict | None = None  # the chunk a round is writing
        self._failed: BaseException | None = None
        self._stopping = False

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
            self.pending_bytes += size
            if text:
                self._text.append(text)
            if delta:
                self._deltas.extend(delta)
        self._writer.add(self)

    def raise_failure(self) -> None:
        """Raise what a round's write raised for this stream, if anything."""
        with self._cond:
            if self._failed is not None:
                raise self._failed

    def has_pending(self) -> bool:
        with self._cond:
            return bool(self._text or self._deltas)

    def pending(self) -> dict | None:
        """The chunk of everything not yet written, or None."""
        with self._cond:
            return self._pending()

    def _pending(self) -> dict | None:
        if not self._text and not self._deltas:
            return None
        chunk = {"offset": self.offset, "text": "".join(self._text)}
        if self._deltas:
            chunk |= {"delta_offset": self.delta_offset, "deltas": list(self._deltas)}
        return chunk

    def take(self) -> dict | None:
        """The chunk a round is to write now (None: nothing pending, failed or stopping)."""
        with self._cond:
            if self._stopping or self._failed is not None or self._in_flight is not None:
                return None
            self._in_flight = self._pending()
            return self._in_flight

    def done(self, chunk: dict, failure: BaseException | None) -> None:
        """The round wrote `chunk` (or failed to, with `failure`)."""
        with self._cond:
            self._in_flight = None
            if failure is not None:
                self._failed = failure
            else:
                self._written(chunk)
            self._cond.notify_all()

    def _written(self, chunk: dict) -> None:
        """Take what `chunk` held off the pending (more may have been appended since)."""
        text = "".join(self._text)[len(chunk["text"]):]
        self._text = [text] if text else []
        deltas = chunk.get("deltas", [])
        self._deltas = self._deltas[len(deltas):]
        self.offset += len(chunk["text"])
        self.delta_offset += len(deltas)
        self.pending_bytes = len(text.encode("utf-8")) + sum(
            len(json.dumps(d, ensure_ascii=False).encode("utf-8")) for d in self._deltas)

    def stop(self) -> dict | None:
        """Take the stream out of the rounds (a round writing its chunk finishes first);
        what is still pending, for the outcome's transaction to write. Idempotent."""
        with self._cond:
            self._stopping = True
            while self._in_flight is not None:
                self._cond.wait()
        self._writer.forget(self)
        return self.pending()


class Writer:
    """A process's output writer: one thread that writes every stream's pending chunk in
    rounds, one `write` (one transaction) per round.

    `settings()` gives `(interval_s, flush_bytes)`, read at each round, so tests that
    install other settings see them.
    """

    def __init__(self, write: WriteMany, settings: Callable[[], tuple[float, int]]):
        self._write, self._settings = write, settings
        self._cond = threading.Condition()
        self._streams: set[OutputStream] = set()  # those that may have something pending
        self._urgent = False
        self._last = -math.inf  # monotonic start of the last round
        self._pid: int | None = None

    def add(self, stream: OutputStream) -> None:
        """`stream` has something pending (called after each append)."""
        urgent = stream.pending_bytes >= self._settings()[1]
        with self._cond:
            if stream in self._streams and not urgent:
                return
            self._streams.add(stream)
            self._urgent = self._urgent or urgent
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid = os.getpid()
                threading.Thread(target=self._loop, daemon=True, name="output").start()
            self._cond.notify()

    def forget(self, stream: OutputStream) -> None:
        with self._cond:
            self._streams.discard(stream)

    def _next_round(self) -> list[OutputStream]:
        """Wait until a round is due; the streams it is for. Called with the lock held."""
        while True:
            if self._streams:
                left = self._last + self._settings()[0] - time.monotonic()
                if left <= 0 or self._urgent:
                    self._urgent = False
                    self._last = time.monotonic()
                    return list(self._streams)
                self._cond.wait(left)
            else:
                self._cond.wait()

    def _loop(self) -> None:
        while True:
            with self._cond:
                streams = self._next_round()
            self.round(streams)
            with self._cond:  # drop the streams left with nothing to write
                self._streams -= {s for s in streams if not s.has_pending()}

    def round(self, streams: list[OutputStream]) -> None:
        """Write the pending chunk of each of `streams` in one `write`."""
        items = [(s, chunk) for s in streams if (chunk := s.take()) is not None]
        if not items:
            return
        try:
            failures = self._write([(s.owner, chunk) for s, chunk in items])
        except BaseException as exc:  # noqa: BLE001 - each stream's next append raises it
            failures = dict.fromkeys(range(len(items)), exc)
        for i, (s, chunk) in enumerate(items):
            s.done(chunk, failures.get(i))


# A round's chunks, each its job's next `job.output.appended` event, in one statement run
# outside a transaction (one round trip: under the io worker's load each round trip waits
# for the other greenlets, and a transaction takes five). A job takes its event only if the
# chunk's run still owns it and nobody cancelled it; the jobs are locked in id order, so two
# rounds, or a round and a run's own write, never wait for each other in a cycle.
_STORE_ROUND = text("""
WITH given AS (
    SELECT * FROM unnest(CAST(:job_ids AS uuid[]), CAST(:run_ids AS uuid[]),
                         CAST(:event_ids AS uuid[]), CAST(:payloads AS text[]))
        AS g(job_id, run_id, event_id, payload)
),
owned AS (
    SELECT j.id, j.tenant_id, j.correlation_id, j.card_id, t.name AS tenant
    FROM jobs j JOIN given g ON g.job_id = j.id JOIN tenants t ON t.id = j.tenant_id
    WHERE j.run_id = g.run_id AND j.status = 'processing' AND NOT j.cancel_requested
    ORDER BY j.id
    FOR UPDATE OF j
),
bumped AS (
    INSERT INTO event_counters AS c (subject_type, subject_id, last_seq)
    SELECT 'job', id, 1 FROM owned ORDER BY id
    ON CONFLICT (subject_type, subject_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING subject_id, last_seq
)
INSERT INTO events (id, tenant_id, subject_type, subject_id, seq, event_type, source_service,
                    payload, metadata, created_at)
SELECT g.event_id, o.tenant_id, 'job', o.id, b.last_seq, CAST(:event_type AS text), 'worker',
       CAST(g.payload AS jsonb),
       jsonb_build_object('tenant', o.tenant, 'correlation_id', o.correlation_id,
                          'card_id', o.card_id, 'version', CAST(:version AS text)),
       :now
FROM owned o JOIN bumped b ON b.subject_id = o.id JOIN given g ON g.job_id = o.id
RETURNING id, tenant_id, subject_type, subject_id, seq, event_type, source_service, payload,
          metadata, created_at
""").bindparams(
    bindparam("job_ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("event_ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("payloads", type_=ARRAY(Text)),
    bindparam("now", type_=Event.created_at.type),
)


def store_round(chunks: list[tuple[str, uuid.UUID, dict]]) -> tuple[list[dict], set[str]]:
    """Store each `(job_id, run_id, payload)` as its job's next output event where that run
    still owns the job, uncancelled, and publish them; `(their envelopes, the job ids whose
    chunk was refused)`."""
    for _, _, payload in chunks:
        events.check(JOB_OUTPUT_APPENDED, payload)
    params = {
        "job_ids": [uuid.UUID(str(job_id)) for job_id, _, _ in chunks],
        "run_ids": [run_id for _, run_id, _ in chunks],
        "event_ids": [uuid.uuid4() for _ in chunks],
        "payloads": [json.dumps(payload, ensure_ascii=False) for _, _, payload in chunks],
        "event_type": JOB_OUTPUT_APPENDED,
        "version": events.ENVELOPE_VERSION,
        "now": datetime.now(UTC),
    }
    rows = db.execute_autocommit(_STORE_ROUND, params)
    envelopes = [events.envelope(row) for row in rows]
    published = publish.try_publish(envelopes)
    if published:
        marks.add(published, [])
    stored = {env["subject"]["id"] for env in envelopes}
    return envelopes, {str(job_id) for job_id, _, _ in chunks} - stored


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

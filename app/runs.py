"""Running a job on a worker: claim it, run its generator, record how it ended.

Every write re-reads the job under a row lock and checks that this run still owns it
(`run_id`), so a duplicate or late message, or a run the orphan sweep gave away, never
moves the job.

An instant generator (`instant = True`: `echo`) runs inside the claim's transaction, and
its job's `processing` and `completed` commit together and are published together, in
order: one commit and one publish instead of two of each. Its one UPDATE holds only if the
job still waits for the message's token (checked under the lock that UPDATE takes). A worker
that dies mid-way commits nothing, so the message's redelivery finds the job still waiting.
What it raises is judged after the claim commits, as any run's failure.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, tuple_, update
from sqlalchemy.exc import StatementError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from app import artifacts, config, db, events, generators, jobs, logs, output, storable, telemetry
from app.errors import NotFound, Unavailable, ValidationFailed
from app.generators import Cancelled, Held, Output, PermanentError, TransientError
from app.jobs import load, subject, transition
from app.models import Job, JobStatus
from app.outbox import unit_of_work
from app.output import OutputStream, Writer
from app.rows import JobRow
from app.scheduling.reasons import PROVIDER_LIMITED
from app.storable import NotStorable
from app.watch import Watcher

log = logging.getLogger(__name__)

# Finishing a run that did its work is worth waiting for a database that restarts.
_persist = retry(
    retry=retry_if_exception_type(Unavailable),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(120),
    reraise=True,
)


class Superseded(Exception):
    """This run no longer owns the job (it was cancelled, reaped or finished elsewhere)."""


def backoff_s(retry_number: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped.

    Hand-written because the delay is stored on the job row (the sweep dispatches it), not
    slept by a retry loop, so tenacity's and Celery's wait helpers do not fit.
    """
    delay = min(cap, base * (2 ** max(0, retry_number - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)  # one run is itself only: the process's watcher keeps a set of them
class Run:
    """One attempt of a job on this worker; the `Context` its generator sees."""

    job_id: str
    run_id: uuid.UUID
    attempt: int
    kind: str
    params: dict
    # When this attempt became due and when it started (for the queue-wait histogram).
    due_at: datetime | None = None
    started_at: datetime | None = None
    # Progress not yet written (`(fraction, message)`), and when this run last wrote it
    # (monotonic): at most once per PROGRESS_MIN_INTERVAL_S.
    pending: tuple[float, str | None] | None = field(default=None, repr=False)
    written_at: float = field(default=-math.inf, repr=False)
    # What the process's watcher found: `Cancelled`, or `Superseded` (no longer this run's).
    stopped: BaseException | None = field(default=None, repr=False)
    # While an instant generator runs in the claim's transaction: progress stays pending
    # (written with the outcome) and nothing opens a transaction of its own, which would
    # find the job not yet claimed (that write is the outcome's).
    in_claim: bool = field(default=False, repr=False)
    # How an instant run ended in the claim's transaction (`completed`), or what it raised
    # there, for `execute` to judge after the claim committed.
    outcome: JobStatus | None = field(default=None, repr=False)
    raised: Exception | None = field(default=None, repr=False)
    # The output the generator streams (`app/output.py`), once it appends any.
    output: OutputStream | None = field(default=None, repr=False)

    def _owned(self, conn, lock: bool) -> JobRow:
        job = load(conn, self.job_id, lock=lock)
        if job.run_id != self.run_id or job.status != JobStatus.PROCESSING:
            raise Superseded(self.job_id)
        return job

    @staticmethod
    def _due(since: float) -> bool:
        """Whether PROGRESS_MIN_INTERVAL_S has passed since `since` (monotonic)."""
        return time.monotonic() - since >= config.current().progress_min_interval_s

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the job was cancelled; `Superseded` if it is no longer ours.

        Reads no database: the process's watcher (`app/watch.py`) reads every run's flag
        every PROGRESS_MIN_INTERVAL_S, and each round of the output writer checks those it
        writes. Writes the pending progress, if any is due, in the same visit (that write
        checks the flag too).
        """
        if self.in_claim:
            return  # claimed in this very transaction: no cancel can have come in between
        if self.stopped is not None:
            raise self.stopped
        if self.output is not None:
            self.output.raise_failure()  # a round of the output writer found it cancelled
        if self.pending is not None and self._due(self.written_at):
            self._write_progress()

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress and its event, coalesced: at most one write per
        PROGRESS_MIN_INTERVAL_S, the latest value wins, and the outcome's transaction records
        what is still pending. A cancelled job stops here; a message Postgres could not store
        raises `NotStorable` (the attempt fails)."""
        fraction = min(1.0, max(0.0, float(fraction)))
        storable.check_text("a progress message", message, storable.MAX_MESSAGE_CHARS)
        self.pending = (fraction, message)
        if not self.in_claim and self._due(self.written_at):
            self._write_progress()

    def append(self, text: str) -> None:
        """Stream text as the job's output (coalesced, written by a thread of the run)."""
        self._output().append(text)

    def append_delta(self, value) -> None:
        """Stream one JSON value as a delta of the job's structured output."""
        self._output().append_delta(value)

    def _output(self) -> OutputStream:
        if self.in_claim:
            raise RuntimeError("an instant generator streams no output")
        if self.output is None:
            self.output = OutputStream(self, _WRITER, config.current().max_output_bytes)
        return self.output

    def _chunk_payload(self, chunk: dict) -> dict:
        return {"job_id": self.job_id, "attempt": self.attempt, **chunk}

    @_persist
    def _write_progress(self) -> None:
        with unit_of_work("worker") as uow:
            job = self._owned(uow.conn, lock=True)
            if job.cancel_requested:
                raise Cancelled(self.job_id)
            self.record_pending(uow, job)
        self.pending = None
        self.written_at = time.monotonic()

    def record_pending(self, uow, job: JobRow) -> None:
        """Write the pending progress and its event in the caller's transaction (the caller
        clears `pending` once it committed)."""
        if self.pending is not None:
            uow.conn.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(progress=self.pending[0], heartbeat_at=_now(), updated_at=_now())
            )
        self.progress_event(uow, job)

    def progress_event(self, uow, job: JobRow) -> None:
        """The event of the pending progress, if any (its row written by the caller)."""
        for event in self.pending_events(job):
            uow.record(*event)

    def pending_events(self, job: JobRow) -> list[tuple[events.Subject, str, dict]]:
        """The events of the output not yet written (its stream stopped first) and of the
        pending progress, as `(subject, type, payload)`: an outcome's transaction writes
        them before its status event."""
        out = []
        if self.output is not None and (chunk := self.output.stop()) is not None:
            out.append((subject(job), events.JOB_OUTPUT_APPENDED, self._chunk_payload(chunk)))
        if self.pending is not None:
            fraction, message = self.pending
            payload = {"job_id": self.job_id, "progress": fraction}
            if message:
                payload["message"] = message
            out.append((subject(job), events.JOB_PROGRESS_UPDATED, payload))
        return out

    @_persist
    def circuit_changed(self, service: str, previous: str, current: str, failures: int) -> None:
        """Record that this run's call changed a circuit breaker's state, in the job's timeline."""
        if self.in_claim:
            raise RuntimeError("an instant generator makes no calls through a breaker")
        with unit_of_work("worker") as uow:
            job = self._owned(uow.conn, lock=True)
            payload = {
                "service_name": service,
                "previous_state": previous,
                "current_state": current,
                "failure_count": failures,
                "job_id": self.job_id,
            }
            uow.record(subject(job), events.CIRCUIT_BREAKER_STATE_CHANGED, payload)


@_persist
def write_outputs(items: list[tuple[Run, dict]]) -> dict[int, BaseException]:
    """Write many runs' output chunks, each as its job's `job.output.appended` event, in
    one statement (a round of the process's output writer: `output.store_round`); by item
    index, what stopped those not written: `Cancelled`, or `Superseded` for a run that no
    longer owns its job. A write the database refuses is tried again item by item, so one
    run's refusal is not the others'.
    """
    try:
        return _store_outputs(items)
    except StatementError:
        if len(items) == 1:
            raise
    failures = {}
    for i, item in enumerate(items):
        try:
            alone = write_outputs([item])
        except StatementError as exc:
            alone = {0: exc}
        if alone:
            failures[i] = alone[0]
    return failures


def _store_outputs(items: list[tuple[Run, dict]]) -> dict[int, BaseException]:
    _, refused = output.store_round([(run.job_id, run.run_id, run._chunk_payload(chunk))
                                     for run, chunk in items])
    if not refused:
        return {}
    with db.transaction() as conn:  # read after the round: it sees what refused the chunks
        found = jobs.owners(conn, refused)
    failures = {}
    for i, (run, _) in enumerate(items):
        if run.job_id not in refused:
            continue
        run_id, status, cancel_requested, _ = found.get(run.job_id, (None,) * 4)
        if run_id == run.run_id and status == JobStatus.PROCESSING and cancel_requested:
            failures[i] = Cancelled(run.job_id)
        else:
            failures[i] = Superseded(run.job_id)
    return failures


def _output_settings() -> tuple[float, int]:
    settings = config.current()
    return settings.output_flush_interval_s, settings.output_flush_bytes


# The process's output writer: every run's output is written in its rounds (`app/output.py`).
_WRITER = Writer(write_outputs, _output_settings)


@_persist
def claim(job_id: str, token: str, worker: str, instant: bool = True) -> Run | None:
    """Take the job for one attempt, if this message is its current dispatch and it waits.

    An instant generator's job is also run and completed in this transaction (unless
    `instant` is False): the run comes back with its `outcome` set.
    """
    with unit_of_work("worker") as uow:
        run = None
        if instant:
            waiting = jobs.read_claimable(uow, job_id, token)
            if waiting is None:
                return _dropped(job_id)
            generator = _instant_generator(waiting.kind)
            if generator is not None:
                run = _run_in_claim(uow, waiting, generator, token, worker)
                if run.outcome is not None:
                    return run
        try:
            job = jobs.claim(uow, job_id, token, worker, run.run_id if run else None)
        except NotFound:
            job = None
        if job is None:
            return _dropped(job_id)
    claimed = Run(
        str(job.id), job.run_id, job.attempts, job.kind, job.params, _due_at(job),
        job.attempt_started_at,
    )
    claimed.raised = run.raised if run else None
    return claimed


def execute_group(
    pairs: list[tuple[str, str]], worker: str, timeout_errors: tuple = ()
) -> dict[str, str | None]:
    """Run the jobs of one message (`[job_id, token]` pairs, jobs of an instant generator
    sent together); how each ended, by id.

    They are claimed, run and completed in one transaction: one commit and one publish for
    all of them. A job that is not that message's to run is dropped, as `execute` drops it;
    a job whose generator raised, or that is not of an instant kind on this worker, runs
    afterwards on its own through `execute` (its generator runs again there: an instant one
    has no effect but its output). If Postgres refused one outcome, the whole transaction
    rolled back, and each job goes on its own the same way, where the refusal is judged.
    """
    try:
        ended = _claim_group(pairs, worker)
    except StatementError:
        ended = {}
    for job_id, token in pairs:
        if job_id not in ended:
            with logs.bound(job_id=job_id):
                ended[job_id] = execute(job_id, token, worker, timeout_errors)
    return ended


@_persist
def _claim_group(pairs: list[tuple[str, str]], worker: str) -> dict[str, JobStatus | None]:
    """The instant part of `execute_group`: the jobs it completed or dropped, by id."""
    ended: dict[str, JobStatus | None] = {}
    with unit_of_work("worker") as uow:
        waiting = jobs.read_claimable_many(uow, pairs)
        instant = []
        for job_id, token in pairs:
            job = waiting.pop(job_id, None)  # a pair given twice runs once
            if job is None:
                ended.setdefault(job_id, _dropped(job_id))
            elif _instant_generator(job.kind) is not None:
                instant.append((job, token))
        for run in _run_many_in_claim(uow, instant, worker):
            if run.outcome is not None:
                ended[run.job_id] = run.outcome
    return ended


def _dropped(job_id: str) -> None:
    log.info("job %s: stale or duplicate message (or no such job) dropped", job_id)


def _due_at(job: JobRow) -> datetime:
    """When the job's attempt became due: its creation, or its `run_after` if later."""
    return max(t for t in (job.created_at, job.run_after) if t is not None)


def _instant_generator(kind: str) -> generators.Generator | None:
    """The generator of `kind` if its job may run inside its claim's transaction: it says it
    is instant, and its artifact is kept in the row (a file would be I/O in the transaction)."""
    generator = generators.find(kind)
    if getattr(generator, "instant", False) and config.current().artifact_store == "postgres":
        return generator
    return None


def _run_instant(job: JobRow, generator) -> tuple[Run, Output | None, artifacts.Staged | None]:
    """Run an instant generator on a waiting job, writing nothing: the run, its checked
    output and its staged artifact, or the run with what it raised kept (`raised`)."""
    run = Run(
        str(job.id), uuid.uuid4(), job.attempts + 1, job.kind, job.params, _due_at(job), _now(),
        in_claim=True,
    )
    try:
        output = generator.run(run.params, run)
        storable.check_output(output, config.current().max_result_bytes)
        staged = artifacts.stage(run.job_id, output.artifact)  # the row's bytes: no I/O
    except Exception as exc:  # noqa: BLE001 - judged by `execute` once the claim committed
        run.raised = exc
        return run, None, None
    finally:
        run.in_claim = False
    return run, output, staged


def _completed_in_claim(uow, run: Run, started: float) -> None:
    """An instant run's job was completed in the claim: its histograms go with the publish."""
    run.pending, run.outcome = None, JobStatus.COMPLETED
    values = telemetry.attempt_values(run.due_at, run.started_at, time.monotonic() - started)
    uow.observe_after_commit(run.kind, values)


def _run_in_claim(uow, job: JobRow, generator, token: str, worker: str) -> Run:
    """Run an instant generator on a waiting job and complete it, in one write. What it
    raises is kept on the run (`raised`), and the caller claims the job as usual; a job that
    stopped waiting meanwhile is left alone (the caller's claim finds it so too)."""
    started = time.monotonic()
    run, output, staged = _run_instant(job, generator)
    if output is None:
        return run
    done = jobs.claim_completed(
        uow, job, token, run.run_id, worker, output.result, output.result_url,
        run.started_at, before=lambda done: run.progress_event(uow, done),
    )
    if done is None:
        return run
    artifacts.attach(uow.conn, done.id, staged)
    _completed_in_claim(uow, run, started)
    return run


def _run_many_in_claim(uow, waiting: list[tuple[JobRow, str]], worker: str) -> list[Run]:
    """`_run_in_claim` for the jobs of one message, writing them together: one UPDATE for
    every job, one statement for every event, one for every artifact. The runs, each with
    its `outcome` set if its job was completed."""
    started, now = time.monotonic(), _now()
    ran, claims, staged = [], [], {}
    for job, token in waiting:
        run, output, artifact = _run_instant(job, _instant_generator(job.kind))
        ran.append(run)
        if output is not None:
            claims.append(jobs.InstantClaim(
                job, uuid.UUID(token), run.run_id, output.result, output.result_url,
                run.pending_events,
            ))
            staged[job.id] = artifact
    done = jobs.claim_completed_many(uow, claims, worker, now)
    artifacts.attach_many(uow.conn, [(job.id, staged[job.id]) for job in done])
    completed = {str(job.id) for job in done}
    for run in ran:
        if run.job_id in completed:
            _completed_in_claim(uow, run, started)
    return ran


@_persist
def complete(run: Run, out: Output, staged: artifacts.Staged | None) -> None:
    """Record the generator's output (its artifact already staged); the job is `completed`.

    Retried while the database is away: the artifact is staged once, by the caller, so a
    retry writes no second file.
    """
    with unit_of_work("worker") as uow:
        # The move checks the run still owns the job; the last progress the generator
        # reported is an event before `completed` (the row's progress becomes 1.0).
        job = jobs.complete(
            uow, run.job_id, run.run_id, out.result, out.result_url,
            before=lambda job: run.progress_event(uow, job),
        )
        if job is None:
            raise Superseded(run.job_id)
        artifacts.attach(uow.conn, job.id, staged)
    run.pending = None


@_persist
def fail(run: Run, code: str, message: str, transient: bool) -> str:
    """Record a failed attempt: `retrying` with backoff while the budget lasts, else `failed`."""
    with unit_of_work("worker") as uow:
        job = run._owned(uow.conn, lock=True)
        run.record_pending(uow, job)  # how far it got
        status = end_attempt(uow, job, code, message, transient).status
    run.pending = None
    return status


def end_attempt(uow, job: JobRow, code: str, message: str, transient: bool) -> JobRow:
    """Decide what follows a failed attempt of a locked job (also used by the orphan sweep)."""
    # Often an exception's text (a generator's, a service's answer): mended, so it commits.
    error = {"code": code, "message": storable.printable(message)}
    if job.cancel_requested:
        return transition(uow, job, JobStatus.CANCELLED, error=error, run_id=None)
    retries_used = job.attempts - job.retry_base - 1
    if not transient or retries_used >= job.max_retries:
        return transition(uow, job, JobStatus.FAILED, error=error, run_id=None)
    settings = config.current()
    delay = backoff_s(retries_used + 1, settings.retry_backoff_base_s, settings.retry_backoff_max_s)
    return transition(
        uow,
        job,
        JobStatus.RETRYING,
        error=error,
        run_id=None,
        dispatch_token=uuid.uuid4(),
        dispatched_at=None,
        admitted_at=None,  # its slot is free while it waits
        run_after=_now() + timedelta(seconds=delay),
    )


HELD = PROVIDER_LIMITED  # the error code of a hold: why the job waits `queued` again


@_persist
def hold(run: Run, held: Held) -> str:
    """The service asked the job to wait (`Held`): back to `queued`, due again after the
    wait, its attempt not spent (`retry_base` moves with `attempts`). A job older than
    HTTP_MAX_HOLD_S has waited enough: the hold is then a transient failure, as any other."""
    settings = config.current()
    with unit_of_work("worker") as uow:
        job = run._owned(uow.conn, lock=True)
        run.record_pending(uow, job)
        message = storable.printable(str(held))
        old = (_now() - job.created_at).total_seconds() > settings.http_max_hold_s
        if job.cancel_requested or old:
            return end_attempt(uow, job, HELD, message, transient=True).status
        return transition(
            uow,
            job,
            JobStatus.QUEUED,
            error={"code": HELD, "message": message},
            run_id=None,
            retry_base=job.retry_base + 1,
            dispatch_token=uuid.uuid4(),
            dispatched_at=None,
            admitted_at=None,
            run_after=_now() + timedelta(seconds=held.delay_s),
        ).status


@_persist
def cancelled(run: Run) -> None:
    """The generator stopped at a checkpoint because the job was cancelled."""
    with unit_of_work("worker") as uow:
        job = run._owned(uow.conn, lock=True)
        run.progress_event(uow, job)  # the output it streamed up to the cancel
        transition(uow, job, JobStatus.CANCELLED, run_id=None)


def _check_flags(watched: list[Run]) -> None:
    """Leave each watched run what its job's row says: cancelled, or no longer its own."""
    with db.transaction() as conn:
        found = jobs.owners(conn, [run.job_id for run in watched])
    for run in watched:
        run_id, status, cancel_requested, _ = found.get(run.job_id, (None,) * 4)
        if run_id != run.run_id or status != JobStatus.PROCESSING:
            run.stopped = run.stopped or Superseded(run.job_id)
        elif cancel_requested:
            run.stopped = run.stopped or Cancelled(run.job_id)


def _renew_leases(watched: list[Run]) -> None:
    """Renew the watched runs' leases, so the orphan sweep leaves them alone."""
    pairs = [(uuid.UUID(run.job_id), run.run_id) for run in watched]
    # Locked in id order, as the output rounds lock them: the two never deadlock.
    mine = (select(Job.id).where(tuple_(Job.id, Job.run_id).in_(pairs)).order_by(Job.id)
            .with_for_update())
    with db.transaction() as conn:
        conn.execute(update(Job).where(Job.id.in_(mine.scalar_subquery()))
                     .values(heartbeat_at=_now()))


# The process's runs, watched together (`app/watch.py`).
_WATCHER = Watcher(
    _check_flags,
    _renew_leases,
    check_s=lambda: config.current().progress_min_interval_s,
    renew_s=lambda: max(0.5, config.current().worker_lost_redelivery_s / 6),
)


def execute(job_id: str, token: str, worker: str, timeout_errors: tuple = ()) -> str | None:
    """Run one dispatch of a job end to end; return how it ended (or None if not ours)."""
    try:
        run = claim(job_id, token, worker)
    except StatementError:
        # An instant run's outcome, written in the claim's transaction, was refused: it all
        # rolled back. Claim alone now, and the outcome's refusal is judged as any run's.
        run = claim(job_id, token, worker, instant=False)
    if run is None:
        return None
    if run.outcome is not None:
        return run.outcome  # counted in the claim's publish
    started, out = time.monotonic(), None
    _WATCHER.add(run)
    try:
        out = _run_generator(run, timeout_errors)
    except Superseded:
        log.info("job %s: run %s superseded, its outcome dropped", job_id, run.run_id)
    finally:
        _WATCHER.discard(run)
    ran_s = None if out is None else time.monotonic() - started
    telemetry.job_attempt(run.kind, run.due_at, run.started_at, ran_s)
    return out


def _produce(run: Run) -> Output:
    """The generator's output, or what it raised in the claim's transaction, raised again."""
    if run.raised is not None:
        raised, run.raised = run.raised, None
        raise raised
    try:
        return generators.get(run.kind).run(run.params, run)
    finally:
        if run.output is not None:
            run.output.stop()  # its pending rest goes with the outcome


def _refused(run: Run, exc: StatementError, what: str) -> str:
    """The database refused a write of this run (what `app.storable` let through): the
    attempt fails for good. The message names the refusal, not the value (it may be hostile,
    and could not be stored anyway)."""
    orig = exc.orig if exc.orig is not None else exc
    sqlstate = getattr(orig, "sqlstate", None)
    why = type(orig).__name__ + (f", SQLSTATE {sqlstate}" if sqlstate else "")
    log.error("job %s: the database refused %s (%s)", run.job_id, what, why)
    run.pending = None  # it may be what was refused
    message = f"the database refused to store {what} ({why})"
    return fail(run, storable.OUTPUT_NOT_STORABLE, message, transient=False)


def _run_generator(run: Run, timeout_errors: tuple) -> str:
    try:
        output = _produce(run)
        # Checked before the outcome's transaction: a refused write would roll it back and
        # leave the job `processing` for the orphan sweep, to fail again the same way.
        storable.check_output(output, config.current().max_result_bytes)
    except Cancelled:
        cancelled(run)
        return JobStatus.CANCELLED
    except Superseded:
        raise
    except NotStorable as exc:
        log.warning("job %s: output not storable: %s", run.job_id, exc.message)
        run.pending = None
        return fail(run, exc.code, exc.message, transient=False)
    except StatementError as exc:  # a write of the run's (progress, mostly) refused
        return _refused(run, exc, "a progress update")
    except Unavailable as exc:
        # The database stayed away longer than `_persist` waits: end this attempt as a
        # transient failure, so it is retried rather than lost.
        return fail(run, "DEPENDENCY_UNAVAILABLE", exc.message, transient=True)
    except timeout_errors:
        return fail(run, "TIMEOUT", "the job outlived its timeout_s", transient=False)
    except Held as exc:
        return hold(run, exc)
    except TransientError as exc:
        return fail(run, "TRANSIENT_ERROR", str(exc) or type(exc).__name__, transient=True)
    except PermanentError as exc:
        return fail(run, exc.code, str(exc) or type(exc).__name__, transient=False)
    except ValidationFailed as exc:
        return fail(run, "GENERATOR_ERROR", str(exc) or type(exc).__name__, transient=False)
    except Exception as exc:  # noqa: BLE001 - a generator bug fails its job, not the worker
        log.exception("job %s: generator %s raised", run.job_id, run.kind)
        return fail(run, "UNEXPECTED_ERROR", f"{type(exc).__name__}: {exc}", transient=False)
    try:
        # A file store writes the file now, before the transaction that commits its row.
        staged = artifacts.stage(run.job_id, output.artifact)
    except artifacts.StoreError as exc:
        # Our failure, not the generator's: log it, and let a later attempt try again.
        log.error("job %s: artifact not stored: %s", run.job_id, exc)
        return fail(run, "ARTIFACT_STORE_ERROR", str(exc), transient=True)
    try:
        complete(run, output, staged)
    except Superseded:
        # Not ours any more, but an earlier try whose COMMIT lost its answer (retried as
        # `Unavailable`) may have attached the file: `discard` keeps it then.
        artifacts.discard(run.job_id, staged)
        raise
    except StatementError as exc:
        artifacts.discard(run.job_id, staged)  # refused before COMMIT: no row names it
        return _refused(run, exc, "the outcome")
    return JobStatus.COMPLETED

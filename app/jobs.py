"""The job service: submit, the state machine's transitions, cancel, retry and queries."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Text, bindparam, cast, column, func, select, update, values
from sqlalchemy.dialects.postgresql import insert

from app import artifacts, config, db, events, generators, outbox, pages
from app.errors import InvalidTransition, NotFound, ValidationFailed
from app.events import Subject
from app.models import TERMINAL, Job, JobStatus, Tenant
from app.outbox import UnitOfWork, unit_of_work
from app.outbox.names import HARD_LIMIT_GRACE_S, IO_QUEUE, JOBS_QUEUE, RUN_JOB, RUN_JOBS
from app.rows import JobRow
from app.scheduling import admission
from app.tenants import TenantRef

DEFAULT_PRIORITY = 5  # of 0-9, 9 the most urgent

# Which status may follow which. Terminal states move only through an explicit retry; a run
# goes back to `queued` when its service asked it to wait (a hold: no attempt spent).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.RETRYING,
         JobStatus.QUEUED}
    ),
    JobStatus.RETRYING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}

_JOB = Job.__table__


def can_transition(current: str, new: str) -> bool:
    """Whether the state machine allows `current` -> `new`."""
    return JobStatus(new) in TRANSITIONS[JobStatus(current)]


def subject(job: JobRow) -> Subject:
    """The event subject of a job row."""
    return Subject("job", job.id, job.tenant_id, job.tenant, job.correlation_id, job.card_id)


def _now() -> datetime:
    return datetime.now(UTC)


def _as_uuid(job_id) -> uuid.UUID:
    try:
        return job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound("no such job") from None


def select_job():
    """The job rows with their tenant's name, as `JobRow.of` takes them."""
    return select(_JOB, Tenant.name.label("tenant")).join(Tenant, Tenant.id == Job.tenant_id)


# Hot-path statements are built once and run with parameters: building a statement costs
# SQLAlchemy more CPU than Postgres spends running it.
_BY_ID = Job.id == bindparam("job_id", type_=_JOB.c.id.type)
_OF_TENANT = Job.tenant_id == bindparam("tenant_id", type_=_JOB.c.tenant_id.type)


def _load_statement(mine: bool, lock: bool):
    q = select_job().where(_BY_ID)
    if mine:
        q = q.where(_OF_TENANT)
    return q.with_for_update(of=_JOB) if lock else q


_LOAD = {(mine, lock): _load_statement(mine, lock) for mine in (0, 1) for lock in (0, 1)}
# UPDATE jobs SET <the columns given at execution> WHERE id = :job_id RETURNING *
_UPDATE = update(_JOB).where(_BY_ID).returning(_JOB)
def _unless_key_used(given):
    """The insert `given` of new jobs, each skipped if its idempotency key was used
    (RETURNING the rows made)."""
    return given.on_conflict_do_nothing(
        index_elements=["tenant_id", "idempotency_key"],
        index_where=Job.idempotency_key.isnot(None),
    ).returning(_JOB)


# A new job, or nothing if its idempotency key was used.
INSERT = _unless_key_used(insert(_JOB))


def insert_many(rows: list[dict]):
    """`INSERT` for many new jobs (`new_row`s) in one statement, in their order."""
    return _unless_key_used(db.insert_rows(_JOB, rows))


# A job waits for a worker while queued or retrying.
WAITING = (JobStatus.QUEUED.value, JobStatus.RETRYING.value)


def _moving(conditions: list, **sets):
    """`UPDATE jobs SET sets WHERE id = :job_id AND conditions RETURNING *, tenant, previous
    status`: lock, check and move a job in one round trip (the lock taken by the CTE's
    `FOR UPDATE` reads the row as committed, so `previous_status` is what it moved from)."""
    old = (
        select(_JOB.c.id, _JOB.c.status.label("previous_status"))
        .where(_BY_ID, *conditions)
        .with_for_update()
        .cte("old")
    )
    return (
        update(_JOB)
        .where(_JOB.c.id == old.c.id, Tenant.id == _JOB.c.tenant_id)
        .values(**sets)
        .returning(_JOB, Tenant.name.label("tenant"), old.c.previous_status)
    )


_NOW = bindparam("now", type_=_JOB.c.updated_at.type)
_RUN_ID = bindparam("the_run_id", type_=_JOB.c.run_id.type)
_TOKEN = Job.dispatch_token == bindparam("token", type_=_JOB.c.dispatch_token.type)
# What a claim writes: the attempt starts now, for this run on this worker.
_CLAIMED = dict(
    attempts=Job.attempts + 1,
    run_id=_RUN_ID,
    worker=bindparam("the_worker", type_=_JOB.c.worker.type),
    heartbeat_at=_NOW,
    attempt_started_at=_NOW,
    started_at=func.coalesce(Job.started_at, _NOW),
    dispatched_at=func.coalesce(Job.dispatched_at, _NOW),
    error=None,
    updated_at=_NOW,
)
_RESULT = dict(
    result=bindparam("the_result", type_=_JOB.c.result.type),
    result_url=bindparam("the_result_url", type_=_JOB.c.result_url.type),
    progress=1.0,
    finished_at=_NOW,
    updated_at=_NOW,
)
# A worker's claim: this message's token is the job's current one and the job waits.
_CLAIM = _moving(
    [_TOKEN, Job.status.in_(WAITING)], status=JobStatus.PROCESSING.value, progress=0.0, **_CLAIMED
)
# A run's success: the job is still this run's and `processing`.
_COMPLETE = _moving(
    [Job.run_id == _RUN_ID, Job.status == JobStatus.PROCESSING.value],
    status=JobStatus.COMPLETED.value,
    **_RESULT,
)
# An instant run's claim and success in one write, if the job still waits for this token:
# one new row version and one set of index entries instead of two. The job was read without
# a lock (`read_claimable`): a lock is a write too, and this UPDATE rechecks under its own.
_CLAIM_COMPLETED = (
    update(_JOB)
    .where(_BY_ID, _TOKEN, Job.status.in_(WAITING))
    .values(status=JobStatus.COMPLETED.value, **{**_CLAIMED, **_RESULT})
    .returning(_JOB)
)
_CLAIMABLE = select_job().where(_BY_ID, _TOKEN, Job.status.in_(WAITING))
_WAITING_OF = select_job().where(
    Job.id.in_(bindparam("job_ids", expanding=True)), Job.status.in_(WAITING)
)


def _token(token: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(token))
    except ValueError:
        return None


def read_claimable(uow: UnitOfWork, job_id, token: str) -> JobRow | None:
    """The job if it waits and `token` is its current dispatch, or None (stale, duplicate,
    unknown job): what an instant run reads, unlocked, before its one write."""
    token_id = _token(token)
    if token_id is None:
        return None
    params = {"job_id": _as_uuid(job_id), "token": token_id}
    row = uow.conn.execute(_CLAIMABLE, params).mappings().first()
    return None if row is None else JobRow.of(row)


def read_claimable_many(uow: UnitOfWork, pairs: list[tuple[str, str]]) -> dict[str, JobRow]:
    """`read_claimable` for many `(job_id, token)` at once, in one statement: the jobs that
    wait for their pair's token, by id (a pair that is not well formed matches nothing)."""
    tokens = {}
    for job_id, token in pairs:
        try:
            tokens[uuid.UUID(str(job_id))] = uuid.UUID(str(token))
        except ValueError:
            continue
    if not tokens:
        return {}
    rows = uow.conn.execute(_WAITING_OF, {"job_ids": list(tokens)}).mappings()
    return {
        str(row["id"]): JobRow.of(row) for row in rows if row["dispatch_token"] == tokens[row["id"]]
    }


def claim(
    uow: UnitOfWork, job_id, token: str, worker: str, run_id: uuid.UUID | None = None
) -> JobRow | None:
    """Move a waiting job to `processing` for the run of the message carrying `token`, or
    None if it is not that message's to run (stale, duplicate, unknown job)."""
    token_id = _token(token)
    if token_id is None:
        return None
    params = {"job_id": _as_uuid(job_id), "token": token_id, "the_run_id": run_id or uuid.uuid4(),
              "the_worker": worker, "now": _now()}
    return _moved(uow, uow.conn.execute(_CLAIM, params).mappings().first())


def claim_completed(
    uow: UnitOfWork, job: JobRow, token: str, run_id: uuid.UUID, worker: str, result,
    result_url, now: datetime, before: Callable[[JobRow], None] | None = None,
) -> JobRow | None:
    """Move a waiting job read by `read_claimable` to `completed` for one instant run, in
    one write, or None if it no longer waits for `token` (cancelled, or another copy of the
    message won). Its events are those of two moves, `processing` then `completed`, with
    `before(job)` (the run's progress) between them. The status it moved from is the one
    read: a token is current for one wait only (a retry or a reap gives a new one)."""
    params = {"job_id": job.id, "token": _token(token), "the_run_id": run_id,
              "the_worker": worker, "now": now, "the_result": result,
              "the_result_url": result_url}
    row = uow.conn.execute(_CLAIM_COMPLETED, params).mappings().first()
    if row is None:
        return None
    done = JobRow.of(row, tenant=job.tenant)
    _record_move(uow, job.status, dataclasses.replace(done, status=JobStatus.PROCESSING))
    if before is not None:
        before(done)
    _record_move(uow, JobStatus.PROCESSING, done)
    return done


@dataclasses.dataclass(frozen=True, slots=True)
class InstantClaim:
    """One instant run's claim and outcome for `claim_completed_many`: the job as read
    waiting, the message's token, the run, its result, and the events that go between its
    `processing` and `completed` (its progress)."""

    job: JobRow
    token: uuid.UUID
    run_id: uuid.UUID
    result: object
    result_url: str | None
    between: Callable[[JobRow], list[tuple[Subject, str, dict]]]


def claim_completed_many(
    uow: UnitOfWork, claims: list[InstantClaim], worker: str, now: datetime
) -> list[JobRow]:
    """`claim_completed` for the jobs of one message, in one `UPDATE ... FROM (VALUES ...)`
    and one `record_many`: the jobs moved, in the order given (a job that no longer waits
    for its token is left out, as `claim_completed` leaves it)."""
    if not claims:
        return []
    params = {"the_worker": worker, "now": now}
    rows = uow.conn.execute(_claim_completed_many(claims), params).mappings()
    done = {row["id"]: row for row in rows}
    moved, moves = [], []
    for claim in claims:
        row = done.pop(claim.job.id, None)
        if row is None:
            continue
        job = JobRow.of(row, tenant=claim.job.tenant)
        processing = dataclasses.replace(job, status=JobStatus.PROCESSING)
        moves.append(move_event(claim.job.status, processing))
        moves.extend(claim.between(job))
        moves.append(move_event(JobStatus.PROCESSING, job))
        moved.append(job)
    uow.record_many(moves)
    for job in moved:
        _terminal_hooks(uow, job)
    return moved


def _claim_completed_many(claims: list[InstantClaim]):
    """`_CLAIM_COMPLETED` for many jobs: each row's token, run and result from a VALUES list
    (Postgres types its columns as text: each is cast to its column's type)."""
    c = _JOB.c
    given = values(
        column("id", Text), column("token", Text), column("run_id", Text),
        column("result", Text), column("result_url", Text), name="given",
    ).data([
        (str(k.job.id), str(k.token), str(k.run_id), json.dumps(k.result), k.result_url)
        for k in claims
    ])
    return (
        update(_JOB)
        .where(
            c.id == cast(given.c.id, c.id.type),
            c.dispatch_token == cast(given.c.token, c.dispatch_token.type),
            Job.status.in_(WAITING),
        )
        .values(
            status=JobStatus.COMPLETED.value,
            **{
                **_CLAIMED,
                **_RESULT,
                "run_id": cast(given.c.run_id, c.run_id.type),
                "result": cast(given.c.result, c.result.type),
                "result_url": given.c.result_url,
            },
        )
        .returning(_JOB)
    )


def complete(
    uow: UnitOfWork, job_id, run_id: uuid.UUID, result, result_url,
    before: Callable[[JobRow], None] | None = None,
) -> JobRow | None:
    """Move a job `processing` under `run_id` to `completed`, or None if it is not that
    run's any more; `before(job)` records what must come before `completed` (the run's
    last progress)."""
    params = {"job_id": _as_uuid(job_id), "the_run_id": run_id, "the_result": result,
              "the_result_url": result_url, "now": _now()}
    return _moved(uow, uow.conn.execute(_COMPLETE, params).mappings().first(), before)


def _moved(uow: UnitOfWork, row, before=None) -> JobRow | None:
    """Record the move a `_moving` statement made (None if it matched nothing)."""
    if row is None:
        return None
    values = dict(row)
    previous = JobStatus(values.pop("previous_status"))
    new = JobRow.of(values)
    if before is not None:
        before(new)
    _record_move(uow, previous, new)
    return new


def _due(now: datetime, settled: datetime, limit: int):
    """The admitted jobs not on the broker, first admitted first (SKIP LOCKED: two sweeps
    never send the same batch): whole rows, as `JobRow.of` takes them. A job is sent by the
    pass that admitted it; the sweep gives that pass a moment."""
    return (
        select_job()
        .where(
            Job.dispatched_at.is_(None),
            Job.status.in_(WAITING),
            Job.admitted_at < settled,
        )
        .order_by(Job.admitted_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=_JOB)
    )


def _run_options(job: JobRow) -> dict:
    timeout = float(job.timeout_s)
    return {
        "queue": queue_of(job.kind),
        # Redis sorts lower numbers first; our contract says 9 is most urgent.
        "priority": 9 - int(job.priority),
        "soft_time_limit": timeout,
        "time_limit": timeout + HARD_LIMIT_GRACE_S,
    }


def queue_of(kind: str) -> str:
    """The queue a job of `kind` goes to: `io` for a generator that waits on a remote
    service (`io_bound`), else `jobs`."""
    return IO_QUEUE if getattr(generators.find(kind), "io_bound", False) else JOBS_QUEUE


def _shares(job: JobRow) -> tuple | None:
    """Jobs of an instant generator share a message with others of the same options."""
    if not getattr(generators.find(job.kind), "instant", False):
        return None
    return tuple(_run_options(job).values())


# A job's run, as the outbox sends it: the job id is the task id (of a message of its own).
JOB_RUN = outbox.register(
    outbox.Sendable(
        name="job",
        table=_JOB,
        task=RUN_JOB,
        queue=JOBS_QUEUE,
        id_kwarg="job_id",
        waiting=Job.status.in_(WAITING),
        due=_due,
        row=JobRow.of,
        options=_run_options,
        shares=_shares,
        group_task=RUN_JOBS,
        group_kwarg="jobs",
        other_queues=(IO_QUEUE,),
    )
)

def admit() -> int:
    """Give free slots to waiting jobs and send them (`app/scheduling/admission.py`); how
    many were admitted (the beat's sweep, the CLI)."""
    return admission.admit(JOB_RUN)


def admit_soon() -> None:
    """Ask this process's admitter for a pass: after a transaction that made a job wait or
    freed a slot (an after-commit callback; the caller does not wait for it)."""
    admission.request(JOB_RUN)


# `hook(uow, job)` for every job that reaches a terminal status, in that transaction. What
# builds on jobs (an agent's execution) registers here, so this module imports nothing above it.
TerminalHook = Callable[[UnitOfWork, JobRow], None]
_ON_TERMINAL: list[TerminalHook] = []


def on_terminal(hook: TerminalHook) -> TerminalHook:
    """Run `hook(uow, job)` in the transaction of every transition to a terminal status."""
    if hook not in _ON_TERMINAL:
        _ON_TERMINAL.append(hook)
    return hook


def terminal_hooks() -> tuple[TerminalHook, ...]:
    """The hooks registered with `on_terminal`, in order."""
    return tuple(_ON_TERMINAL)


def load(conn: Connection, job_id, tenant_id=None, lock: bool = False) -> JobRow:
    """One job, optionally locked; `NotFound` if absent or not the tenant's."""
    params = {"job_id": _as_uuid(job_id), "tenant_id": tenant_id}
    row = conn.execute(_LOAD[tenant_id is not None, bool(lock)], params).mappings().first()
    if row is None:
        raise NotFound("no such job")
    return JobRow.of(row)


# What a run's watcher reads of each job: whether the run still owns it, whether it was
# cancelled, and its events' subject (not the whole row: its params may be a long chat).
_OWNERS = (
    select(Job.id, Job.run_id, Job.status, Job.cancel_requested, Job.tenant_id,
           Job.correlation_id, Job.card_id, Tenant.name.label("tenant"))
    .join(Tenant, Tenant.id == Job.tenant_id)
    .where(Job.id.in_(bindparam("ids", expanding=True)))
)


def owners(conn: Connection, job_ids) -> dict[str, tuple]:
    """Jobs' owning run, status, cancel flag and event subject, by id (unlocked):
    `{id: (run_id, status, cancel_requested, subject)}` for those that exist."""
    rows = conn.execute(_OWNERS, {"ids": sorted({_as_uuid(i) for i in job_ids})})
    return {str(r.id): (r.run_id, r.status, r.cancel_requested,
                        Subject("job", r.id, r.tenant_id, r.tenant, r.correlation_id, r.card_id))
            for r in rows}


def transition(uow: UnitOfWork, job: JobRow, status: JobStatus, **values) -> JobRow:
    """Move a locked job to `status`, write `values`, record `job.status.updated`."""
    if not can_transition(job.status, status):
        raise InvalidTransition(
            f"a {job.status} job cannot become {status.value}",
            {"status": [f"is {job.status}"]},
        )
    now = _now()
    values.update(status=status.value, updated_at=now)
    if status in TERMINAL:
        values.setdefault("finished_at", now)
    row = uow.conn.execute(_UPDATE, {"job_id": job.id, **values}).mappings().one()
    new = JobRow.of(row, tenant=job.tenant)
    _record_move(uow, job.status, new)
    return new


def move_event(previous: JobStatus, new: JobRow) -> tuple[Subject, str, dict]:
    """The event of a move from `previous` to `new.status`: `(subject, type, payload)`."""
    status = new.status
    payload = {
        "job_id": str(new.id),
        "status": status.value,
        "previous_status": previous.value,
        "attempt": new.attempts,
    }
    if status == JobStatus.COMPLETED:
        payload.update(result=new.result, result_url=new.result_url)
    ended_badly = (JobStatus.FAILED, JobStatus.RETRYING, JobStatus.CANCELLED)
    if new.error is not None and status in ended_badly:
        payload["error"] = new.error
    if status == JobStatus.QUEUED and previous == JobStatus.PROCESSING:  # a hold
        payload.update(error=new.error, run_after=events.iso(new.run_after))
    return subject(new), events.JOB_STATUS_UPDATED, payload


def _record_move(uow: UnitOfWork, previous: JobStatus, new: JobRow) -> None:
    """The event of a move from `previous` to `new.status`, and the terminal hooks."""
    uow.record(*move_event(previous, new))
    _terminal_hooks(uow, new)


def _terminal_hooks(uow: UnitOfWork, job: JobRow) -> None:
    if job.status in TERMINAL:
        uow.after_commit(admit_soon)  # its slot is free
        for hook in _ON_TERMINAL:
            hook(uow, job)
    elif job.admitted_at is None:  # waits again (a retry, a hold): its slot is free
        uow.after_commit(admit_soon)
    elif job.status == JobStatus.PROCESSING:  # started: the broker has room for one more
        uow.after_commit(admit_soon)


def _timeout_s(req: dict, settings: config.Settings) -> tuple[float, list[str]]:
    """The job's `timeout_s` and what is wrong with the one asked for.

    A run holds a worker slot up to its timeout, so one request may not ask for more than
    MAX_TIMEOUT_S; the default is held to the same bound.
    """
    asked = req.get("timeout_s")
    if asked is None:
        return min(settings.default_timeout_s, settings.max_timeout_s), []
    if asked > settings.max_timeout_s:
        return asked, [f"must be at most {settings.max_timeout_s:g} (MAX_TIMEOUT_S)"]
    return asked, []


def highest_priority(tenant: TenantRef, settings: config.Settings) -> int:
    """The highest priority this tenant may submit at."""
    mine = tenant.max_priority
    return settings.tenant_max_priority if mine is None else mine


def checked(req: dict, settings: config.Settings, tenant: TenantRef) -> float:
    """Check a job request field by field (params and limits together); its `timeout_s`."""
    timeout_s, problems = _timeout_s(req, settings)
    details = {"timeout_s": problems} if problems else {}
    highest = highest_priority(tenant, settings)
    if req.get("priority", 0) > highest:
        details["priority"] = [f"must be at most {highest} for this tenant"]
    try:
        generators.validate_params(req["kind"], req["params"])
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, {**exc.details, **details}) from None
    tenant_checks = getattr(generators.find(req["kind"]), "check_for_tenant", None)
    if tenant_checks is not None:
        details.update(tenant_checks(tenant.id, req["params"]))
    if details:
        raise ValidationFailed("job request rejected", details)
    return timeout_s


def submit(
    tenant: TenantRef, req: dict, idempotency_key: str | None = None, correlation_id=None
) -> tuple[JobRow, bool]:
    """Create a queued job (or find the one this idempotency key made); `(job, created)`."""
    with unit_of_work("api") as uow:
        return create(uow, tenant, req, idempotency_key, correlation_id)


def create(
    uow: UnitOfWork,
    tenant: TenantRef,
    req: dict,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    agent_command_id: uuid.UUID | None = None,
) -> tuple[JobRow, bool]:
    """Insert a queued job in the caller's transaction; `(job row, created)`."""
    settings = config.current()
    timeout_s = checked(req, settings, tenant)
    values = new_row(tenant, req, timeout_s, idempotency_key, correlation_id, _now(), settings)
    values["agent_command_id"] = agent_command_id
    due_now = countdown_s(req) <= 0
    if due_now and values["concurrency_key"] is None and admission.admits_at_once(
            uow.conn, tenant.id, values["kind"], settings):
        values["admitted_at"] = values["created_at"]
    row = uow.conn.execute(INSERT, values).mappings().first()
    if row is None:
        existing = (
            uow.conn.execute(
                select_job().where(
                    Job.tenant_id == tenant.id, Job.idempotency_key == idempotency_key
                )
            )
            .mappings()
            .one()
        )
        return JobRow.of(existing), False
    job = JobRow.of(row, tenant=tenant.name)
    uow.record(subject(job), events.JOB_STATUS_UPDATED, queued_payload(job))
    if job.admitted_at is not None:
        uow.send_after_commit(JOB_RUN, job)
    if due_now:
        # Admitted at once, the pass only looks for jobs another caller made meanwhile
        # (its lock was ours): one probe when there are none.
        uow.after_commit(admit_soon)
    return job, True


def countdown_s(req: dict) -> float:
    """How long a job request waits in Postgres before it is sent."""
    return float(req.get("countdown_s") or 0)


def queued_payload(job: JobRow) -> dict:
    """The payload of a new job's first event (`queued`, from nothing)."""
    return {"job_id": str(job.id), "status": JobStatus.QUEUED, "previous_status": None,
            "attempt": 0}


def new_row(
    tenant: TenantRef, req: dict, timeout_s: float, idempotency_key: str | None,
    correlation_id: str | None, now: datetime, settings: config.Settings,
) -> dict:
    """The columns of a new queued job for a checked request (`INSERT` takes them)."""
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant.id,
        "kind": req["kind"],
        "params": req["params"],
        "status": JobStatus.QUEUED.value,
        "max_retries": req.get("max_retries", settings.default_max_retries),
        "priority": req.get("priority", min(DEFAULT_PRIORITY, highest_priority(tenant, settings))),
        "concurrency_key": req.get("concurrency_key"),
        "card_id": req.get("card_id"),
        "correlation_id": correlation_id or str(uuid.uuid4()),
        "timeout_s": timeout_s,
        "idempotency_key": idempotency_key,
        "admitted_at": None,
        "dispatch_token": uuid.uuid4(),
        "agent_command_id": None,
        "run_after": now + timedelta(seconds=countdown_s(req)),
        "created_at": now,
        "updated_at": now,
    }


def get(tenant: TenantRef, job_id) -> JobRow:
    """One of the tenant's jobs."""
    with db.transaction() as conn:
        return load(conn, job_id, tenant.id)


def list_jobs(
    tenant: TenantRef, filters: dict, limit: int = 50, cursor: str | None = None
) -> tuple[list[JobRow], str | None]:
    """The tenant's jobs, newest first, keyset-paginated: `(items, next_cursor)`."""
    q = select_job().where(Job.tenant_id == tenant.id)
    for name in ("status", "kind", "card_id"):
        if filters.get(name) is not None:
            q = q.where(getattr(Job, name) == filters[name])
    rows, next_cursor = pages.newest_first(q, _JOB, limit, cursor)
    return [JobRow.of(r) for r in rows], next_cursor


def cancel(tenant: TenantRef, job_id) -> JobRow:
    """Cancel a job: at once if it waits, at the worker's next checkpoint if it runs."""
    with unit_of_work("api") as uow:
        job = load(uow.conn, job_id, tenant.id, lock=True)
        if job.status == JobStatus.PROCESSING:
            row = (
                uow.conn.execute(
                    update(_JOB)
                    .where(Job.id == job.id)
                    .values(cancel_requested=True, updated_at=_now())
                    .returning(_JOB)
                )
                .mappings()
                .one()
            )
            return JobRow.of(row, tenant=job.tenant)
        return transition(uow, job, JobStatus.CANCELLED, cancel_requested=True)


def retry(tenant: TenantRef, job_id) -> JobRow:
    """Put a failed or cancelled job back in the queue; `attempts` keeps counting."""
    with unit_of_work("api") as uow:
        job = load(uow.conn, job_id, tenant.id, lock=True)
        job = transition(
            uow,
            job,
            JobStatus.QUEUED,
            retry_base=job.attempts,
            error=None,
            result=None,
            result_url=None,
            progress=0.0,
            cancel_requested=False,
            finished_at=None,
            dispatch_token=uuid.uuid4(),
            dispatched_at=None,
            admitted_at=None,
            run_after=_now(),
            run_id=None,
        )
    return job


def job_events(tenant: TenantRef, job_id, since: int = 0, limit: int = 100) -> dict:
    """A page of the job's events with `seq > since`, in order: `{items, next_since,
    has_more}` (one more is read to know whether more follow)."""
    with db.transaction() as conn:
        job = load(conn, job_id, tenant.id)
        found = events.for_subject(conn, "job", job.id, since, limit=limit + 1)
    return events.page(found, since, limit)


def artifact(tenant: TenantRef, job_id) -> tuple[str, bytes]:
    """The artifact the job's generator wrote: `(content_type, body)`."""
    with db.transaction() as conn:
        found = artifacts.find(conn, load(conn, job_id, tenant.id).id)
    if found is None:
        raise NotFound("this job has no result artifact")
    return artifacts.read(found)  # a file is read outside the transaction


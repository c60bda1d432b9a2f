"""Agent commands: a mailbox per agent, run one at a time in the order they were accepted.

A command is a row and its event, committed together, then a Celery message (as a job
is). Only the head of an agent's mailbox is sent to the broker; when it ends, the
transaction that records its outcome sends the next one. So commands to one agent never
run side by side, whatever the number of workers, and a worker that receives a command
which is not (or no longer) the head simply drops it. An `execute` whose capability
submitted a job leaves the mailbox once the job is submitted, and ends when the job does,
by `job_ended`, the hook this module registers for the job's terminal transition.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import distinct_on

from app import audit, config, db, events, jobs, outbox
from app.agents import core, scopes, types
from app.agents.heartbeats import beat
from app.agents.types import AgentContext, JobRequest
from app.errors import Conflict, NotFound, ValidationFailed
from app.events import iso
from app.models import AgentCommand, AgentStatus, CommandName, CommandStatus, JobStatus
from app.outbox import UnitOfWork, unit_of_work
from app.outbox.names import AGENTS_QUEUE, HARD_LIMIT_GRACE_S, RUN_COMMAND
from app.rows import AgentRow, CommandRow, JobRow
from app.scheduling.limits import agent_key
from app.tenants import TenantRef

log = logging.getLogger(__name__)

COMMANDS = tuple(CommandName)
_CMD = AgentCommand.__table__
# Commands still holding their agent's turn: waiting, or running on a worker.
IN_MAILBOX = or_(
    AgentCommand.status == CommandStatus.QUEUED.value,
    and_(AgentCommand.status == CommandStatus.PROCESSING.value, AgentCommand.job_id.is_(None)),
)


def _due_heads(now: datetime, settled: datetime, limit: int):
    """Every mailbox head that is queued but not on the broker (lost or never sent): whole
    rows, as `CommandRow.of` takes them."""
    heads = (
        select(_CMD)
        .where(IN_MAILBOX)
        .ext(distinct_on(AgentCommand.agent_id))
        .order_by(AgentCommand.agent_id, AgentCommand.seq)
        .subquery()
    )
    return (
        select(heads)
        .where(
            heads.c.status == CommandStatus.QUEUED.value,
            heads.c.dispatched_at.is_(None),
            heads.c.updated_at < settled,
        )
        .limit(limit)
    )


def _run_options(_command: CommandRow) -> dict:
    # The hook's soft limit (AGENT_COMMAND_TIMEOUT_S), then a grace to record TIMEOUT.
    timeout = config.current().agent_command_timeout_s
    return {"soft_time_limit": timeout, "time_limit": timeout + HARD_LIMIT_GRACE_S}


# A command's run, as the outbox sends it: the command id is the task id. Only a mailbox's
# head is ever sent; one waiting on the broker is lost with it.
COMMAND_RUN = outbox.register(
    outbox.Sendable(
        name="command",
        table=_CMD,
        task=RUN_COMMAND,
        queue=AGENTS_QUEUE,
        id_kwarg="command_id",
        waiting=AgentCommand.status == CommandStatus.QUEUED.value,
        due=_due_heads,
        row=CommandRow.of,
        options=_run_options,
    )
)

# --- accepting (API) -------------------------------------------------------------------


def check(agent: AgentRow, command: str, params: Any, who: TenantRef | None = None) -> dict:
    """Validate a command and its params before anything is written; return clean params.

    An `execute` by `who` also needs the scopes its capability asks for (403 otherwise)."""
    if command not in COMMANDS:
        raise ValidationFailed("unknown command", {"command": [f"one of {', '.join(COMMANDS)}"]})
    if not isinstance(params, dict):
        raise ValidationFailed("bad params", {"params": ["must be an object"]})
    if command != CommandName.EXECUTE:
        unknown = sorted(set(params) - {"reason"})
        if unknown or not isinstance(params.get("reason", ""), str):
            bad = unknown or ["reason"]
            raise ValidationFailed(
                f"{command} takes only an optional reason",
                {f"params.{k}": ["only `reason` (a string) is accepted"] for k in bad},
            )
        if len(params.get("reason", "")) > 200:
            raise ValidationFailed("reason too long", {"params.reason": ["at most 200 characters"]})
        return params
    cap = types.capability(agent.type, params.get("capability"))
    if who is not None:
        scopes.check_execute(who, cap)
    value = params.get("input", {})
    types.validate_input(agent.type, cap, value, agent.config)
    return {"capability": cap.name, "input": value}


def accept(
    who: TenantRef, agent_id, command: str, params: Any, correlation_id: str | None = None
) -> CommandRow:
    """Queue a command for one of the tenant's agents (checked first); return it."""
    with unit_of_work("api") as uow:
        agent = core.load(uow.conn, agent_id, who.id, lock=True)
        params = check(agent, command, params, who)
        if command == CommandName.EXECUTE and not _will_be_running(uow.conn, agent):
            raise Conflict(
                f"agent is {agent.status}, not running: start it first",
                {"status": [f"is {agent.status}"]},
                code="AGENT_NOT_RUNNING",
            )
        cmd = enqueue(uow, agent, command, params, who, correlation_id)
        audit.record(
            uow.conn,
            who,
            f"agent.command.{command}",
            ("agent", agent.id),
            {"command_id": str(cmd.id), "params": params},
        )
    return cmd


def _will_be_running(conn: Connection, agent: AgentRow) -> bool:
    """Running now, or a start/restart waits ahead in its mailbox."""
    if agent.status == AgentStatus.RUNNING:
        return True
    pending = conn.execute(
        select(func.count())
        .select_from(AgentCommand)
        .where(
            AgentCommand.agent_id == agent.id,
            IN_MAILBOX,
            AgentCommand.command.in_([CommandName.START, CommandName.RESTART]),
        )
    ).scalar_one()
    return pending > 0


def enqueue(
    uow: UnitOfWork, agent: AgentRow, command: str, params: dict, who: TenantRef | None, corr=None
) -> CommandRow:
    """Insert a queued command for a locked agent; send it if it heads the mailbox."""
    now = core.now()
    cmd = CommandRow.of(
        uow.conn.execute(
            insert(_CMD)
            .values(
                id=uuid.uuid4(),
                agent_id=agent.id,
                tenant_id=agent.tenant_id,
                command=command,
                params=params,
                status=CommandStatus.QUEUED.value,
                correlation_id=corr or str(uuid.uuid4()),
                created_by=who.key_prefix if who else None,
                dispatch_token=uuid.uuid4(),
                created_at=now,
                updated_at=now,
            )
            .returning(_CMD)
        )
        .mappings()
        .one()
    )
    _record(uow, agent, cmd, None)
    _send_head(uow, agent.id)
    return cmd


def drop_queued(uow: UnitOfWork, agent: AgentRow, code: str, message: str) -> int:
    """Fail every command of a locked agent still waiting its turn; return how many."""
    rows = (
        uow.conn.execute(
            select(_CMD)
            .where(
                AgentCommand.agent_id == agent.id,
                AgentCommand.status == CommandStatus.QUEUED.value,
            )
            .order_by(AgentCommand.seq)
            .with_for_update()
        )
        .mappings()
        .all()
    )
    for row in rows:
        _update(
            uow, agent, CommandRow.of(row),
            status=CommandStatus.FAILED.value, error={"code": code, "message": message},
        )
    return len(rows)


def _head(conn: Connection, agent_id) -> CommandRow | None:
    row = (
        conn.execute(
            select(_CMD)
            .where(AgentCommand.agent_id == agent_id, IN_MAILBOX)
            .order_by(AgentCommand.seq)
            .limit(1)
        )
        .mappings()
        .first()
    )
    return CommandRow.of(row) if row else None


def _send_head(uow: UnitOfWork, agent_id) -> None:
    """Send the agent's next command after commit, unless it is already on its way."""
    head = _head(uow.conn, agent_id)
    if head and head.status == CommandStatus.QUEUED and head.dispatched_at is None:
        uow.send_after_commit(COMMAND_RUN, head)


def _record(
    uow: UnitOfWork, agent: AgentRow, cmd: CommandRow, previous: CommandStatus | None
) -> None:
    payload = {
        "command_id": str(cmd.id),
        "agent_id": str(agent.id),
        "command": cmd.command.value,
        "status": cmd.status.value,
        "previous_status": previous.value if previous else None,
        "job_id": str(cmd.job_id) if cmd.job_id else None,
    }
    if cmd.result is not None:
        payload["result"] = cmd.result
    if cmd.error is not None:
        payload["error"] = cmd.error
    uow.record(core.subject(agent), events.AGENT_COMMAND_UPDATED, payload)


def _update(uow: UnitOfWork, agent: AgentRow, cmd: CommandRow, **values) -> CommandRow:
    """Write a locked command and record `agent.command.updated` if its status moved."""
    values.setdefault("updated_at", core.now())
    if values.get("status") in (CommandStatus.COMPLETED, CommandStatus.FAILED):
        values.setdefault("finished_at", values["updated_at"])
    new = CommandRow.of(
        uow.conn.execute(
            update(_CMD).where(AgentCommand.id == cmd.id).values(**values).returning(_CMD)
        )
        .mappings()
        .one()
    )
    if new.status != cmd.status or new.job_id != cmd.job_id:
        _record(uow, agent, new, cmd.status)
    return new


def _execution(uow: UnitOfWork, agent: AgentRow, cmd: CommandRow, event_type: str, **extra) -> None:
    payload = {
        "command_id": str(cmd.id),
        "agent_id": str(agent.id),
        "capability": cmd.params["capability"],
        "job_id": str(cmd.job_id) if cmd.job_id else None,
        **extra,
    }
    uow.record(core.subject(agent), event_type, payload)


# --- running (worker) ------------------------------------------------------------------


@dataclass
class Claimed:
    """A command this worker took, with its agent (and the agent's status before it)."""

    command: CommandRow
    agent: AgentRow
    was: AgentStatus


@dataclass
class Outcome:
    """How a command's work ended: a result, an error, or a job to submit."""

    result: Any = None
    error: dict | None = None
    job: JobRequest | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)


def _lock(conn: Connection, command_id) -> CommandRow | None:
    try:
        cid = core.as_uuid(command_id, "command")
    except NotFound:
        return None
    row = (
        conn.execute(select(_CMD).where(AgentCommand.id == cid).with_for_update())
        .mappings()
        .first()
    )
    return CommandRow.of(row) if row else None


def claim(command_id: str, token: str, worker: str) -> Claimed | None:
    """Take a command if this message is its current dispatch and it heads its mailbox."""
    with unit_of_work("worker") as uow:
        peek = uow.conn.execute(
            select(AgentCommand.agent_id).where(AgentCommand.id == core.as_uuid(command_id))
        ).scalar_one_or_none()
        if peek is None:
            log.warning("command %s: no such command, message dropped", command_id)
            return None
        agent = core.load(uow.conn, peek, lock=True, deleted=True)  # the agent first: lock order
        cmd = _lock(uow.conn, command_id)
        if str(cmd.dispatch_token) != token or cmd.status != CommandStatus.QUEUED:
            log.info("command %s: stale or duplicate message dropped", command_id)
            return None
        head = _head(uow.conn, agent.id)
        if head.id != cmd.id:
            # An earlier command still holds the turn; ending it sends this one again.
            _update(uow, agent, cmd, dispatched_at=None)
            return None
        now = core.now()
        cmd = _update(
            uow,
            agent,
            cmd,
            status=CommandStatus.PROCESSING.value,
            worker=worker,
            started_at=now,
            dispatched_at=cmd.dispatched_at or now,
        )
        return _begin(uow, agent, cmd)


def _begin(uow: UnitOfWork, agent: AgentRow, cmd: CommandRow) -> Claimed | None:
    """What a command does to its agent as it starts; None if it already ended here."""
    name, was = cmd.command, agent.status
    if name == CommandName.START and agent.status == AgentStatus.RUNNING:
        _end(uow, agent, cmd, Outcome(result={"status": AgentStatus.RUNNING, "changed": False}))
        return None
    if name == CommandName.STOP and agent.status == AgentStatus.STOPPED:
        _end(uow, agent, cmd, Outcome(result={"status": AgentStatus.STOPPED, "changed": False}))
        return None
    if name == CommandName.EXECUTE and agent.status != AgentStatus.RUNNING:
        error = {"code": "AGENT_NOT_RUNNING", "message": f"agent is {agent.status}"}
        _end(uow, agent, cmd, Outcome(error=error))
        return None
    cap = _capability(agent, cmd) if name == CommandName.EXECUTE else None
    if name == CommandName.EXECUTE and cap is None:
        # Accepted, then its plugin went away (a deploy without it): fail, do not wedge.
        error = {"code": "UNKNOWN_CAPABILITY", "message": "this worker does not know it"}
        _end(uow, agent, cmd, Outcome(error=error))
        return None
    if name in (CommandName.START, CommandName.RESTART):
        agent = core.set_status(uow, agent, AgentStatus.STARTING, name)
    if cap is not None and not cap.submits_job:
        _execution(uow, agent, cmd, events.EXECUTION_STARTED)
    return Claimed(cmd, agent, was)


def _capability(agent: AgentRow, cmd: CommandRow) -> types.Capability | None:
    agent_type = types.all_types().get(agent.type)
    return agent_type.capabilities.get(cmd.params["capability"]) if agent_type else None


def work(claimed: Claimed, timeout_errors: tuple = ()) -> Outcome:
    """Run the command's hooks or capability; never raises (the outcome says how it went)."""
    agent, cmd = claimed.agent, claimed.command
    ctx = AgentContext(
        agent.id, agent.name, agent.type, agent.config, agent.tenant, cmd.id
    )
    try:
        agent_type = types.get(agent.type)
        name = cmd.command
        was_up = claimed.was != AgentStatus.STOPPED
        if name == CommandName.STOP or (name == CommandName.RESTART and was_up):
            agent_type.stop(ctx)
        if name in (CommandName.START, CommandName.RESTART):
            agent_type.start(ctx)
        if name == CommandName.STATUS:
            return Outcome(result=_status(agent, agent_type.health(ctx)), lines=ctx.lines)
        if name == CommandName.EXECUTE:
            value = _capability(agent, cmd).run(ctx, cmd.params["input"])
            if isinstance(value, JobRequest):
                return Outcome(job=value, lines=ctx.lines)
            json.dumps(value)  # a result Postgres cannot store fails here, not at commit
            return Outcome(result=value, lines=ctx.lines)
        status = AgentStatus.STOPPED if name == CommandName.STOP else AgentStatus.RUNNING
        return Outcome(result={"status": status, "changed": True}, lines=ctx.lines)
    except timeout_errors:
        message = f"{cmd.command} outlived AGENT_COMMAND_TIMEOUT_S"
        return Outcome(error={"code": "TIMEOUT", "message": message}, lines=ctx.lines)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure fails its command, not the worker
        log.warning("agent %s: %s raised %r", agent.id, cmd.command, exc)
        message = f"{type(exc).__name__}: {exc}"[:4000]
        ctx.log(f"{cmd.command} failed: {message}", "error")
        return Outcome(error={"code": "AGENT_ERROR", "message": message}, lines=ctx.lines)


def _status(agent: AgentRow, health) -> dict:
    if not isinstance(health, dict):  # a plugin's mistake must not break the command
        health = {"healthy": False, "report": repr(health)[:500]}
    json.dumps(health)
    return {
        "status": agent.status.value,
        "last_heartbeat": iso(agent.last_heartbeat),
        "health": health,
    }


def finish(claimed: Claimed, outcome: Outcome) -> str | None:
    """Record how a claimed command ended (if it is still this run's); send the next one."""
    with unit_of_work("worker") as uow:
        agent = core.load(uow.conn, claimed.agent.id, lock=True, deleted=True)
        cmd = _lock(uow.conn, claimed.command.id)
        if (
            cmd.status != CommandStatus.PROCESSING
            or cmd.dispatch_token != claimed.command.dispatch_token
            or cmd.job_id is not None
        ):
            log.info("command %s: no longer this run's, outcome dropped", cmd.id)
            return None
        core.write_logs(uow.conn, agent.id, outcome.lines, cmd.id)
        return _end(uow, agent, cmd, outcome).status


def _end(uow: UnitOfWork, agent: AgentRow, cmd: CommandRow, outcome: Outcome) -> CommandRow:
    """Apply an outcome to a locked agent and command, then hand the turn on."""
    name = cmd.command
    if outcome.job is not None:
        cmd = _submit(uow, agent, cmd, outcome.job)
    elif outcome.error is not None:
        lifecycle = (CommandName.START, CommandName.RESTART, CommandName.STOP)
        if name in lifecycle and agent.status != AgentStatus.STOPPED:
            agent = core.set_status(
                uow, agent, AgentStatus.ERROR, f"{name} failed", error=outcome.error
            )
        cmd = _update(uow, agent, cmd, status=CommandStatus.FAILED.value, error=outcome.error)
        if name == CommandName.EXECUTE:
            _execution(uow, agent, cmd, events.EXECUTION_FAILED, error=outcome.error)
    else:
        if name in (CommandName.START, CommandName.RESTART):
            agent = core.set_status(
                uow, agent, AgentStatus.RUNNING, name, last_heartbeat=core.now()
            )
        elif name == CommandName.STOP:
            reason = cmd.params.get("reason") or CommandName.STOP
            agent = core.set_status(uow, agent, AgentStatus.STOPPED, reason)
        elif name == CommandName.STATUS and outcome.result["health"].get("healthy"):
            agent = beat(uow, agent)  # a healthy status check is a heartbeat too
        cmd = _update(uow, agent, cmd, status=CommandStatus.COMPLETED.value, result=outcome.result)
        if name == CommandName.EXECUTE:
            _execution(uow, agent, cmd, events.EXECUTION_COMPLETED, result=outcome.result)
    _send_head(uow, agent.id)
    return cmd


def _submit(uow: UnitOfWork, agent: AgentRow, cmd: CommandRow, req: JobRequest) -> CommandRow:
    """Submit the job an execution asked for; the command waits for it off the mailbox."""
    tenant = TenantRef(agent.tenant_id, agent.tenant)
    # An agent's jobs count against the agent's own limit: its concurrency key.
    body = {"kind": req.kind, "params": req.params, "card_id": req.card_id,
            "concurrency_key": agent_key(agent.id)}
    try:
        job, _ = jobs.create(uow, tenant, body, None, cmd.correlation_id, cmd.id)
    except ValidationFailed as exc:
        error = {"code": "JOB_REJECTED", "message": f"{exc.message}: {exc.details}"[:4000]}
        cmd = _update(uow, agent, cmd, status=CommandStatus.FAILED.value, error=error)
        _execution(uow, agent, cmd, events.EXECUTION_FAILED, error=error)
        return cmd
    cmd = _update(uow, agent, cmd, job_id=job.id)
    _execution(uow, agent, cmd, events.EXECUTION_STARTED)
    return cmd


def run(command_id: str, token: str, worker: str, timeout_errors: tuple = ()) -> str | None:
    """One dispatch of a command end to end (the Celery task's body)."""
    claimed = claim(command_id, token, worker)
    if claimed is None:
        return None
    return finish(claimed, work(claimed, timeout_errors))


# --- the job callback ------------------------------------------------------------------


@jobs.on_terminal
def job_ended(uow: UnitOfWork, job: JobRow) -> None:
    """A job reached a terminal status: if an execution submitted it, end the execution."""
    if job.agent_command_id is None:
        return
    cmd = _lock(uow.conn, job.agent_command_id)
    if cmd is None or cmd.status != CommandStatus.PROCESSING or cmd.job_id != job.id:
        return  # already ended (e.g. the job was retried after its execution failed)
    agent = core.load(uow.conn, cmd.agent_id, deleted=True)
    if job.status == JobStatus.COMPLETED:
        result = {"job_id": str(job.id), "result": job.result}
        cmd = _update(uow, agent, cmd, status=CommandStatus.COMPLETED.value, result=result)
        _execution(uow, agent, cmd, events.EXECUTION_COMPLETED, result=result)
    else:
        reason = (job.error or {}).get("message") or f"the job was {job.status}"
        error = {"code": f"JOB_{job.status.upper()}", "message": reason}
        cmd = _update(uow, agent, cmd, status=CommandStatus.FAILED.value, error=error)
        _execution(uow, agent, cmd, events.EXECUTION_FAILED, error=error)
    core.write_logs(
        uow.conn, agent.id, [("info", f"job {job.id} {job.status}")], cmd.id
    )


# --- queries and sweeps ----------------------------------------------------------------


def get(who: TenantRef, agent_id, command_id) -> CommandRow:
    """One command of one of the tenant's agents."""
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        row = (
            conn.execute(
                select(_CMD).where(
                    AgentCommand.id == core.as_uuid(command_id, "command"),
                    AgentCommand.agent_id == agent.id,
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound("no such command")
    return scopes.command_view(who, CommandRow.of(row))


def list_commands(who: TenantRef, agent_id, limit: int = 50) -> list[CommandRow]:
    """The agent's latest commands, newest first."""
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        rows = conn.execute(
            select(_CMD)
            .where(AgentCommand.agent_id == agent.id)
            .order_by(AgentCommand.seq.desc())
            .limit(limit)
        ).mappings()
        return [scopes.command_view(who, CommandRow.of(r)) for r in rows]


def reap_stuck(limit: int = 100) -> int:
    """Fail the commands whose worker vanished mid-hook (beyond their time limit)."""
    settings = config.current()
    overdue = core.now() - timedelta(
        seconds=settings.agent_command_timeout_s + HARD_LIMIT_GRACE_S + 5
    )
    ids = db.ids_where(
        AgentCommand.id,
        AgentCommand.status == CommandStatus.PROCESSING.value,
        AgentCommand.job_id.is_(None),
        AgentCommand.started_at < overdue,
        limit=limit,
    )
    for command_id in ids:
        with unit_of_work("beat") as uow:
            agent_id = uow.conn.execute(
                select(AgentCommand.agent_id).where(AgentCommand.id == command_id)
            ).scalar_one()
            agent = core.load(uow.conn, agent_id, lock=True, deleted=True)
            cmd = _lock(uow.conn, command_id)
            if cmd.status != CommandStatus.PROCESSING or cmd.job_id is not None:
                continue
            log.warning("command %s: worker %s lost, failing it", command_id, cmd.worker)
            error = {"code": "WORKER_LOST", "message": f"worker {cmd.worker} stopped"}
            _end(uow, agent, cmd, Outcome(error=error))
    return len(ids)

"""Read-only views of one agent: status, events, logs and metrics."""

from __future__ import annotations

from sqlalchemy import case, func, select

from app import db, events
from app.agents import core, scopes
from app.events import iso
from app.models import Agent, AgentCommand, AgentLog, CommandName, CommandStatus
from app.tenants import TenantRef

_OPEN = (CommandStatus.QUEUED, CommandStatus.PROCESSING)


def status(who: TenantRef, agent_id) -> dict:
    """The agent's lifecycle state, its heartbeat and its mailbox depth."""
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        queued = conn.execute(
            select(func.count())
            .select_from(AgentCommand)
            .where(
                AgentCommand.agent_id == agent.id,
                AgentCommand.status == CommandStatus.QUEUED,
            )
        ).scalar_one()
    return {
        "agent_id": str(agent.id),
        "status": agent.status.value,
        "last_heartbeat": iso(agent.last_heartbeat),
        "error": agent.error,
        "version": agent.version,
        "queued_commands": queued,
    }


def agent_events(who: TenantRef, agent_id, since: int = 0, limit: int = 100) -> dict:
    """A page of the agent's events with `seq > since`, in order: `{items, next_since,
    has_more}`."""
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        found = events.for_subject(conn, "agent", agent.id, since, limit=limit + 1)
    # A job's result in an execution's events is the job's: only for `jobs:read`.
    return events.page([scopes.envelope_for(who, e) for e in found], since, limit)


def logs(who: TenantRef, agent_id, limit: int = 100) -> list[dict]:
    """The agent's latest `limit` log lines, newest last."""
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        rows = conn.execute(
            select(AgentLog)
            .where(AgentLog.agent_id == agent.id)
            .order_by(AgentLog.id.desc())
            .limit(limit)
        ).all()
        lines = [
            {
                "at": iso(r.created_at),
                "level": r.level,
                "message": r.message,
                "command_id": str(r.command_id) if r.command_id else None,
            }
            for r in rows
        ]
    return lines[::-1]


def _durations(conn, agent_id, key) -> dict:
    """Counts by status and run durations (seconds) per `key` of the agent's commands."""
    duration = func.extract("epoch", AgentCommand.finished_at - AgentCommand.started_at)
    rows = conn.execute(
        select(
            key.label("key"),
            func.count().label("count"),
            func.count().filter(AgentCommand.status == CommandStatus.COMPLETED).label("completed"),
            func.count().filter(AgentCommand.status == CommandStatus.FAILED).label("failed"),
            func.count().filter(AgentCommand.status.in_(_OPEN)).label("open"),
            func.avg(duration).label("avg"),
            func.percentile_cont(0.5).within_group(duration).label("p50"),
            func.percentile_cont(0.95).within_group(duration).label("p95"),
            func.max(duration).label("max"),
        )
        .where(AgentCommand.agent_id == agent_id, key.isnot(None))
        .group_by(key)
    ).all()
    out = {}
    for r in rows:
        out[r.key] = {
            "count": r.count,
            "completed": r.completed,
            "failed": r.failed,
            "in_progress": r.open,
            "duration_s": {
                name: (round(float(v), 6) if v is not None else None)
                for name, v in (("avg", r.avg), ("p50", r.p50), ("p95", r.p95), ("max", r.max))
            },
        }
    return out


def metrics(who: TenantRef, agent_id) -> dict:
    """Counts and durations of the agent's commands (by command) and executions (by
    capability); an execution's duration runs until its job ended."""
    capability = case(
        (AgentCommand.command == CommandName.EXECUTE, AgentCommand.params["capability"].astext),
        else_=None,
    )
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        return {
            "agent_id": str(agent.id),
            "commands": _durations(conn, agent.id, AgentCommand.command),
            "executions": _durations(conn, agent.id, capability),
            "last_heartbeat": iso(agent.last_heartbeat),
        }


def totals() -> dict:
    """Every tenant's live agents by type and status (commands by status, which grow with
    history, are counted by the sweep: `app/telemetry.py`)."""
    with db.transaction() as conn:
        agents = conn.execute(
            select(Agent.type, Agent.status, func.count())
            .where(Agent.deleted_at.is_(None))
            .group_by(Agent.type, Agent.status)
        ).all()
    return {"agents": [tuple(r) for r in agents]}

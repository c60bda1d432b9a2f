"""Heartbeats: workers run each live agent's health hook; silence makes it `inactive`."""

from __future__ import annotations

import logging
from datetime import timedelta

from app import config, db
from app.agents import core, types
from app.agents.types import AgentContext
from app.models import Agent, AgentStatus
from app.outbox import UnitOfWork, unit_of_work
from app.rows import AgentRow

log = logging.getLogger(__name__)
_LIVE = (AgentStatus.RUNNING.value, AgentStatus.INACTIVE.value)


def beat(uow: UnitOfWork, agent: AgentRow) -> AgentRow:
    """Record a healthy heartbeat of a locked live agent; an `inactive` one runs again."""
    if agent.status not in _LIVE or agent.deleted_at is not None:
        return agent  # a stopped (or stopping-by-delete) agent has no heartbeat to keep
    if agent.status == AgentStatus.INACTIVE:
        return core.set_status(
            uow, agent, AgentStatus.RUNNING, "heartbeat", last_heartbeat=core.now()
        )
    return core.update_agent(uow, agent, last_heartbeat=core.now())


def _health(agent: AgentRow) -> tuple[bool, list[tuple[str, str]]]:
    ctx = AgentContext(agent.id, agent.name, agent.type, agent.config, agent.tenant)
    try:
        report = types.get(agent.type).health(ctx)
        healthy = bool(isinstance(report, dict) and report.get("healthy"))
        if not healthy:
            ctx.log(f"health check reported unhealthy: {report!r}"[:500], "warning")
    except Exception as exc:  # noqa: BLE001 - a failing health hook is an unhealthy agent
        healthy = False
        ctx.log(f"health check raised {type(exc).__name__}: {exc}"[:500], "error")
    return healthy, ctx.lines


def heartbeat_all(limit: int = 1000) -> int:
    """Run the health hook of every live agent; a healthy answer refreshes its heartbeat.

    An unhealthy or failing hook leaves the heartbeat to age: `mark_inactive` then decides.
    Returns how many agents were healthy.
    """
    ids = db.ids_where(Agent.id, Agent.deleted_at.is_(None), Agent.status.in_(_LIVE), limit=limit)
    healthy_count = 0
    for agent_id in ids:
        with db.transaction() as conn:
            agent = core.load(conn, agent_id, deleted=True)
        healthy, lines = _health(agent)
        with unit_of_work("worker") as uow:
            agent = core.load(uow.conn, agent_id, lock=True, deleted=True)
            core.write_logs(uow.conn, agent_id, lines)
            if healthy:
                beat(uow, agent)
                healthy_count += 1
    return healthy_count


def mark_inactive(limit: int = 500) -> int:
    """Make `inactive` every running agent whose heartbeat is older than the timeout."""
    timeout = config.current().agent_heartbeat_timeout_s
    stale = core.now() - timedelta(seconds=timeout)
    ids = db.ids_where(
        Agent.id,
        Agent.deleted_at.is_(None),
        Agent.status == AgentStatus.RUNNING.value,
        Agent.last_heartbeat < stale,
        limit=limit,
    )
    for agent_id in ids:
        with unit_of_work("beat") as uow:
            agent = core.load(uow.conn, agent_id, lock=True)
            if agent.status == AgentStatus.RUNNING and agent.last_heartbeat < stale:
                log.warning("agent %s: no heartbeat for %.0fs, inactive", agent_id, timeout)
                core.set_status(uow, agent, AgentStatus.INACTIVE, f"no heartbeat for {timeout:g}s")
    return len(ids)

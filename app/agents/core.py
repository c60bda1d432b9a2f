"""The agent row: load it, show it, and change its status (with its event)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, insert, select, update

from app import config, events
from app.agents import scopes, types
from app.errors import NotFound
from app.events import Subject, plain
from app.models import Agent, AgentLog, AgentStatus, Tenant
from app.outbox import UnitOfWork
from app.rows import AgentRow

_AGENT = Agent.__table__


def now() -> datetime:
    return datetime.now(UTC)


def as_uuid(value, what: str = "agent") -> uuid.UUID:
    """A path id as a UUID; anything else is simply not found."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no such {what}") from None


def load(
    conn: Connection, agent_id, tenant_id=None, lock: bool = False, deleted=False
) -> AgentRow:
    """One agent; `NotFound` if absent, deleted or not the tenant's."""
    q = (
        select(_AGENT, Tenant.name.label("tenant"))
        .join(Tenant, Tenant.id == Agent.tenant_id)
        .where(Agent.id == as_uuid(agent_id))
    )
    if tenant_id is not None:
        q = q.where(Agent.tenant_id == tenant_id)
    if not deleted:
        q = q.where(Agent.deleted_at.is_(None))
    if lock:
        q = q.with_for_update(of=_AGENT)
    row = conn.execute(q).mappings().first()
    if row is None:
        raise NotFound("no such agent")
    return AgentRow.of(row)


def public(agent: AgentRow) -> dict:
    """An agent in JSON's terms, with its type's capabilities: what the API dumps through its
    schema (which picks the fields a client sees)."""
    try:
        caps = [capability_view(c) for c in types.get(agent.type).capabilities.values()]
    except Exception:  # noqa: BLE001 - a type whose plugin is gone still shows its agents
        caps = []
    return {**plain(agent), "capabilities": caps}


def subject(agent: AgentRow) -> Subject:
    """The event subject of an agent."""
    return Subject("agent", agent.id, agent.tenant_id, agent.tenant)


def update_agent(uow: UnitOfWork, agent: AgentRow, **values) -> AgentRow:
    """Write `values` to a locked agent row; return the new row."""
    values.setdefault("updated_at", now())
    row = (
        uow.conn.execute(
            update(_AGENT).where(Agent.id == agent.id).values(**values).returning(_AGENT)
        )
        .mappings()
        .one()
    )
    return AgentRow.of(row, tenant=agent.tenant)


def set_status(
    uow: UnitOfWork, agent: AgentRow, status: AgentStatus, reason: str, error=None, **values
) -> AgentRow:
    """Move a locked agent to `status` and record `agent.status.changed` (if it changed)."""
    if agent.status == status and error is None:
        return update_agent(uow, agent, **values) if values else agent
    new = update_agent(uow, agent, status=status.value, error=error, **values)
    payload = {
        "agent_id": str(agent.id),
        "status": status.value,
        "previous_status": agent.status.value,
        "reason": reason,
    }
    if error is not None:
        payload["error"] = error
    uow.record(subject(new), events.AGENT_STATUS_CHANGED, payload)
    return new


def write_logs(conn: Connection, agent_id, lines: list[tuple[str, str]], command_id=None) -> None:
    """Append log lines, then drop the agent's oldest beyond `AGENT_LOG_RETAIN`."""
    if not lines:
        return
    conn.execute(
        insert(AgentLog),
        [
            {"agent_id": agent_id, "command_id": command_id, "level": lvl, "message": msg}
            for lvl, msg in lines
        ],
    )
    keep = config.current().agent_log_retain
    cutoff = (
        select(AgentLog.id)
        .where(AgentLog.agent_id == agent_id)
        .order_by(AgentLog.id.desc())
        .offset(keep)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(delete(AgentLog).where(AgentLog.agent_id == agent_id, AgentLog.id <= cutoff))


def describe(agent_type: types.AgentType) -> dict:
    """A type as the API lists it: its config schema and capabilities with input schemas."""
    return {
        "type": agent_type.name,
        "description": agent_type.description,
        "config_schema": agent_type.config_schema,
        "capabilities": [capability_view(c) for c in agent_type.capabilities.values()],
    }


def capability_view(cap: types.Capability) -> dict:
    """A capability as the API shows it, with the scopes a key needs to execute it."""
    return {
        "name": cap.name,
        "description": cap.description,
        "input_schema": cap.input_schema,
        "scopes": list(scopes.needed(cap)),
    }

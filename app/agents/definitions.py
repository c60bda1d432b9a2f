"""Agent definitions: create, list, patch (a new version each time), revert, delete."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from app import audit, db, events, pages
from app.agents import commands, core, types
from app.errors import Conflict, ValidationFailed
from app.events import iso
from app.models import Agent, AgentStatus, AgentVersion, CommandName, Tenant
from app.outbox import UnitOfWork, unit_of_work
from app.rows import AgentRow
from app.tenants import TenantRef

_AGENT = Agent.__table__


def _name_taken(exc: IntegrityError) -> Exception:
    """A clear 409 for a duplicate name; any other integrity error stays what it is."""
    if "uq_agents_tenant_name" in str(exc.orig):
        return Conflict("an agent with this name exists", {"name": ["already in use"]})
    return exc


def _add_version(uow: UnitOfWork, who: TenantRef, agent: AgentRow, reason: str) -> None:
    uow.conn.execute(
        insert(AgentVersion).values(
            agent_id=agent.id,
            version=agent.version,
            name=agent.name,
            description=agent.description,
            config=agent.config,
            reason=reason,
            created_by=who.key_prefix,
        )
    )


def create(who: TenantRef, req: dict) -> AgentRow:
    """Register an agent (version 1, `stopped`); its type and config are checked first."""
    types.validate_config(req["type"], req.get("config", {}))
    now = core.now()
    try:
        with unit_of_work("api") as uow:
            row = (
                uow.conn.execute(
                    insert(_AGENT)
                    .values(
                        id=uuid.uuid4(),
                        tenant_id=who.id,
                        name=req["name"],
                        type=req["type"],
                        description=req.get("description") or "",
                        config=req.get("config", {}),
                        version=1,
                        status=AgentStatus.STOPPED.value,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(_AGENT)
                )
                .mappings()
                .one()
            )
            agent = AgentRow.of(row, tenant=who.name)
            _add_version(uow, who, agent, "create")
            uow.record(
                core.subject(agent),
                events.AGENT_CREATE_COMPLETED,
                {"agent_id": str(agent.id), "name": agent.name, "type": agent.type, "version": 1},
            )
            audit.record(uow.conn, who, "agent.create", ("agent", agent.id), _snapshot(agent))
    except IntegrityError as exc:
        raise _name_taken(exc) from None
    return agent


def _snapshot(agent: AgentRow) -> dict:
    return {
        "name": agent.name,
        "type": agent.type,
        "description": agent.description,
        "config": agent.config,
        "version": agent.version,
    }


def get(who: TenantRef, agent_id) -> AgentRow:
    with db.transaction() as conn:
        return core.load(conn, agent_id, who.id)


def list_agents(
    who: TenantRef, filters: dict, limit: int = 50, cursor: str | None = None
) -> tuple[list[AgentRow], str | None]:
    """The tenant's agents, newest first, keyset-paginated: `(items, next_cursor)`."""
    q = (
        select(_AGENT, Tenant.name.label("tenant"))
        .join(Tenant, Tenant.id == Agent.tenant_id)
        .where(Agent.tenant_id == who.id, Agent.deleted_at.is_(None))
    )
    for name in ("status", "type"):
        if filters.get(name) is not None:
            q = q.where(getattr(Agent, name) == filters[name])
    rows, next_cursor = pages.newest_first(q, _AGENT, limit, cursor)
    return [AgentRow.of(r) for r in rows], next_cursor


def _new_version(
    uow: UnitOfWork, who, agent: AgentRow, changes: dict, reason: str, **extra
) -> AgentRow:
    agent = core.update_agent(uow, agent, version=agent.version + 1, **changes)
    _add_version(uow, who, agent, reason)
    uow.record(
        core.subject(agent),
        events.AGENT_UPDATE_COMPLETED,
        {"agent_id": str(agent.id), "version": agent.version, "reason": reason, **extra},
    )
    return agent


def patch(who: TenantRef, agent_id, changes: dict) -> AgentRow:
    """Change name, description or config: a new version; the old one is kept."""
    try:
        with unit_of_work("api") as uow:
            agent = core.load(uow.conn, agent_id, who.id, lock=True)
            if "config" in changes:
                types.validate_config(agent.type, changes["config"])
            agent = _new_version(uow, who, agent, changes, "patch")
            audit.record(
                uow.conn,
                who,
                "agent.update",
                ("agent", agent.id),
                {"version": agent.version, "changes": changes},
            )
    except IntegrityError as exc:
        raise _name_taken(exc) from None
    return agent


def _version_view(row) -> dict:
    return {
        "version": row.version,
        "name": row.name,
        "description": row.description,
        "config": row.config,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
    }


def versions(who: TenantRef, agent_id) -> list[dict]:
    """Every version of the agent, oldest first."""
    with db.transaction() as conn:
        agent = core.load(conn, agent_id, who.id)
        rows = conn.execute(
            select(AgentVersion)
            .where(AgentVersion.agent_id == agent.id)
            .order_by(AgentVersion.version)
        ).all()
        return [_version_view(r) for r in rows]


def revert(who: TenantRef, agent_id, version: int) -> AgentRow:
    """A new version whose config (and description) equal those of `version`."""
    with unit_of_work("api") as uow:
        agent = core.load(uow.conn, agent_id, who.id, lock=True)
        old = uow.conn.execute(
            select(AgentVersion).where(
                AgentVersion.agent_id == agent.id, AgentVersion.version == version
            )
        ).one_or_none()
        if old is None:
            raise ValidationFailed("no such version", {"version": [f"1..{agent.version}"]})
        # The type's schema may have changed since: the old config must still pass.
        types.validate_config(agent.type, old.config)
        changes = {"config": old.config, "description": old.description}
        agent = _new_version(uow, who, agent, changes, "revert", reverted_to=version)
        audit.record(
            uow.conn,
            who,
            "agent.revert",
            ("agent", agent.id),
            {"version": agent.version, "reverted_to": version},
        )
    return agent


def delete(who: TenantRef, agent_id) -> None:
    """Soft-delete: gone from the API at once; a live agent is stopped by a last command."""
    with unit_of_work("api") as uow:
        agent = core.load(uow.conn, agent_id, who.id, lock=True)
        failed = commands.drop_queued(uow, agent, "AGENT_DELETED", "the agent was deleted")
        if agent.status != AgentStatus.STOPPED:
            commands.enqueue(uow, agent, CommandName.STOP, {"reason": "delete"}, who)
        agent = core.update_agent(uow, agent, deleted_at=core.now())
        payload = {"agent_id": str(agent.id)}
        uow.record(core.subject(agent), events.AGENT_DELETE_COMPLETED, payload)
        audit.record(
            uow.conn,
            who,
            "agent.delete",
            ("agent", agent.id),
            {"status": agent.status.value, "dropped_commands": failed},
        )


def agent_types() -> list[dict]:
    """Every agent type with its config schema and capabilities."""
    return [core.describe(t) for _, t in sorted(types.all_types().items())]

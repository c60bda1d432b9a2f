"""Agent routes: thin adapters over `app.agents` (registry, commands, queries) and `app.audit`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, url_for

from api import correlation, schemas
from api.auth import current_tenant, requires
from api.body import json_body, query
from app import audit
from app.agents import commands, queries, registry

log = logging.getLogger(__name__)
bp = Blueprint("agents", __name__)
bp.before_request(requires("agents"))


@bp.get("/agent-types")
def agent_types():
    """Every agent type: its config schema and capabilities with their input schemas."""
    return jsonify({"items": registry.agent_types()})


@bp.post("/agents")
def create():
    """Register an agent (201, version 1, stopped)."""
    agent = registry.create(current_tenant(), schemas.agent_create.load(json_body()))
    resp = jsonify(agent)
    resp.status_code = 201
    resp.headers["Location"] = url_for("agents.get_agent", agent_id=agent["id"])
    return resp


@bp.get("/agents")
def list_agents():
    """The tenant's agents, newest first, with keyset pagination."""
    q = query(schemas.agent_list_query)
    items, next_cursor = registry.list_agents(current_tenant(), q, q["limit"], q.get("cursor"))
    return jsonify({"items": items, "next_cursor": next_cursor})


@bp.get("/agents/<agent_id>")
def get_agent(agent_id: str):
    return jsonify(registry.get(current_tenant(), agent_id))


@bp.patch("/agents/<agent_id>")
def patch(agent_id: str):
    """Change name, description or config: a new version."""
    changes = schemas.agent_patch.load(json_body())
    return jsonify(registry.patch(current_tenant(), agent_id, changes))


@bp.delete("/agents/<agent_id>")
def delete(agent_id: str):
    """Soft-delete (204); a live agent is stopped by its workers."""
    registry.delete(current_tenant(), agent_id)
    return Response(status=204)


@bp.get("/agents/<agent_id>/versions")
def versions(agent_id: str):
    return jsonify({"items": registry.versions(current_tenant(), agent_id)})


@bp.post("/agents/<agent_id>/revert")
def revert(agent_id: str):
    """A new version whose config equals that of `version`."""
    version = schemas.agent_revert.load(json_body())["version"]
    return jsonify(registry.revert(current_tenant(), agent_id, version))


def _accept(agent_id: str, command: str, params: dict):
    corr = correlation.for_new_rows()
    cmd = commands.accept(current_tenant(), agent_id, command, params, correlation_id=corr)
    correlation.bind(command_id=cmd["id"])
    log.info("agent command %s accepted", command)
    resp = jsonify(cmd)
    resp.status_code = 202
    resp.headers["Location"] = url_for(
        "agents.get_command", agent_id=agent_id, command_id=cmd["id"]
    )
    return resp


@bp.post("/agents/<agent_id>/commands")
def command(agent_id: str):
    """Queue a command (202); `execute` input is checked against its capability first."""
    body = schemas.command.load(json_body())
    return _accept(agent_id, body["command"], body["params"])


def _shortcut(name: str):
    def view(agent_id: str):
        body = schemas.shortcut.load(json_body(optional=True))
        return _accept(agent_id, name, body["params"])

    view.__name__ = view.__qualname__ = name
    view.__doc__ = f"Queue a `{name}` command (202), as POST /commands would."
    bp.add_url_rule(f"/agents/<agent_id>/{name}", name, view, methods=["POST"])


for _name in ("start", "stop", "restart"):
    _shortcut(_name)


@bp.get("/agents/<agent_id>/commands")
def list_commands(agent_id: str):
    """The agent's latest commands, newest first."""
    limit = query(schemas.limit_query)["limit"]
    return jsonify({"items": commands.list_commands(current_tenant(), agent_id, limit)})


@bp.get("/agents/<agent_id>/commands/<command_id>")
def get_command(agent_id: str, command_id: str):
    return jsonify(commands.get(current_tenant(), agent_id, command_id))


@bp.get("/agents/<agent_id>/status")
def status(agent_id: str):
    return jsonify(queries.status(current_tenant(), agent_id))


@bp.get("/agents/<agent_id>/metrics")
def metrics(agent_id: str):
    return jsonify(queries.metrics(current_tenant(), agent_id))


@bp.get("/agents/<agent_id>/logs")
def logs(agent_id: str):
    """The agent's latest log lines, newest last."""
    limit = query(schemas.limit_query)["limit"]
    return jsonify({"items": queries.logs(current_tenant(), agent_id, limit)})


@bp.get("/agents/<agent_id>/events")
def agent_events(agent_id: str):
    """A page of the agent's events after `since`, in `seq` order (`limit` at most)."""
    q = query(schemas.since_query)
    return jsonify(queries.agent_events(current_tenant(), agent_id, q["since"], q["limit"]))


@bp.get("/audit")
def audit_trail():
    """Who did what to the tenant's agents, newest first (`before` pages on)."""
    q = query(schemas.audit_query)
    agent_id = str(q["agent_id"]) if q.get("agent_id") else None
    items, next_before = audit.entries(current_tenant(), agent_id, q["limit"], q.get("before"))
    return jsonify({"items": items, "next_before": next_before})

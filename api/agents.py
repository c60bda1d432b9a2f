"""Agent routes: thin adapters over `app.agents` (definitions, commands, queries) and `app.audit`,
each declaring its input, answer and refusals."""

from __future__ import annotations

import logging

from flask import Response, url_for

from api import agents_examples, correlation
from api.auth import current_tenant, requires
from api.contract import Blueprint
from api.schemas import (
    AgentCommandListSchema,
    AgentCommandSchema,
    AgentCreateSchema,
    AgentListQuerySchema,
    AgentMetricsSchema,
    AgentPageSchema,
    AgentPatchSchema,
    AgentRevertSchema,
    AgentSchema,
    AgentStatusSchema,
    AgentTypeListSchema,
    AgentVersionListSchema,
    AuditPageSchema,
    AuditQuerySchema,
    CommandSchema,
    EventListSchema,
    LimitQuerySchema,
    LogListSchema,
    ShortcutSchema,
    SinceQuerySchema,
)
from app import audit
from app.agents import commands, definitions, queries
from app.agents.core import public
from app.events import plain
from app.models import CommandName

log = logging.getLogger(__name__)
bp = Blueprint("agents", __name__, tag="Agents", area="agents", examples=agents_examples.agents)
bp.before_request(requires("agents"))


@bp.get("/agent-types")
@bp.response(200, AgentTypeListSchema, description="{items}")
def agent_types():
    """Agent types, their config schema and capabilities

    Every agent type (built in or from a plugin): the JSON Schema of its `config` and its
    capabilities, each with the JSON Schema of its `execute` input.
    """
    return {"items": definitions.agent_types()}


@bp.post("/agents")
@bp.arguments(AgentCreateSchema)
@bp.response(201, AgentSchema, description="created: version 1, stopped")
@bp.refuses(409)
def create(body: dict):
    """Register an agent

    Creates an agent of a `type` (201, with `Location`): version 1, `stopped`. `config` is
    checked against the type's schema; names are unique per tenant (409).
    """
    agent = definitions.create(current_tenant(), body)
    location = url_for("agents.get_agent", agent_id=str(agent.id))
    return public(agent), 201, {"Location": location}


@bp.get("/agents")
@bp.arguments(AgentListQuerySchema, location="query")
@bp.response(200, AgentPageSchema, description="{items, next_cursor}")
def list_agents(q: dict):
    """List agents, newest first

    The tenant's agents, filtered by `status` and `type`, newest first, with the same keyset
    pagination as jobs (`cursor` from `next_cursor`).
    """
    items, next_cursor = definitions.list_agents(current_tenant(), q, q["limit"], q.get("cursor"))
    return {"items": [public(agent) for agent in items], "next_cursor": next_cursor}


@bp.get("/agents/<agent_id>")
@bp.response(200, AgentSchema, description="the agent")
@bp.refuses(404)
def get_agent(agent_id: str):
    """Get an agent

    One agent: its current version, status, last heartbeat and capabilities.
    """
    return public(definitions.get(current_tenant(), agent_id))


@bp.patch("/agents/<agent_id>")
@bp.arguments(AgentPatchSchema)
@bp.response(200, AgentSchema, description="the new version")
@bp.refuses(404, 409)
def patch(changes: dict, agent_id: str):
    """Change an agent: a new version

    Changes `name`, `description` or `config` (at least one): the agent gets a new `version`,
    and the old one is kept (see `/versions`).
    """
    return public(definitions.patch(current_tenant(), agent_id, changes))


@bp.delete("/agents/<agent_id>")
@bp.response(204, description="deleted")
@bp.refuses(404)
def delete(agent_id: str):
    """Delete an agent (a live one is stopped first)

    Soft delete (204): the agent answers 404 from then on, its queued commands fail and a live
    one gets a last `stop`; its events and audit entries stay.
    """
    definitions.delete(current_tenant(), agent_id)
    return Response(status=204)


@bp.get("/agents/<agent_id>/versions")
@bp.response(200, AgentVersionListSchema, description="{items}")
@bp.refuses(404)
def versions(agent_id: str):
    """Every version, oldest first

    Each version's name, description and config, why it was made (`create`, `patch`,
    `revert`) and by which key.
    """
    return {"items": definitions.versions(current_tenant(), agent_id)}


@bp.post("/agents/<agent_id>/revert")
@bp.arguments(AgentRevertSchema)
@bp.response(200, AgentSchema, description="the new version")
@bp.refuses(404)
def revert(body: dict, agent_id: str):
    """A new version equal to an old one's config

    Makes a new version whose name, description and config equal those of `version`; history
    is never rewritten.
    """
    return public(definitions.revert(current_tenant(), agent_id, body["version"]))


def _accept(agent_id: str, command: str, params: dict):
    corr = correlation.for_new_rows()
    cmd = commands.accept(current_tenant(), agent_id, command, params, correlation_id=corr)
    correlation.bind(command_id=str(cmd.id))
    log.info("agent command %s accepted", command)
    location = url_for("agents.get_command", agent_id=agent_id, command_id=str(cmd.id))
    return plain(cmd), 202, {"Location": location}


@bp.post("/agents/<agent_id>/commands")
@bp.arguments(CommandSchema)
@bp.response(202, AgentCommandSchema, description="queued")
@bp.refuses(404, 409)
def command(body: dict, agent_id: str):
    """Queue a command (execute input checked first)

    Queues `start`, `stop`, `restart`, `status` or `execute` in the agent's mailbox (202, with
    `Location`); commands run one at a time in order. An `execute` input is checked against
    its capability's JSON Schema before anything is queued, and needs a running agent or a
    start ahead of it (409 otherwise).
    """
    return _accept(agent_id, body["command"], body["params"])


def _shortcut(name: str):
    def view(body: dict, agent_id: str):
        return _accept(agent_id, name, body["params"])

    view.__name__ = view.__qualname__ = name
    view.__doc__ = (
        f"Queue a {name} command\n\nThe same as `POST /commands` with `command: {name}`; the "
        "body is optional and takes only `params.reason`."
    )
    view = bp.refuses(404)(bp.response(202, AgentCommandSchema, description="queued")(view))
    view = bp.arguments(ShortcutSchema, location="optional_json", required=False)(view)
    bp.add_url_rule(f"/agents/<agent_id>/{name}", name, view, methods=["POST"])


for _name in (CommandName.START, CommandName.STOP, CommandName.RESTART):
    _shortcut(_name)


@bp.get("/agents/<agent_id>/commands")
@bp.arguments(LimitQuerySchema, location="query")
@bp.response(200, AgentCommandListSchema, description="{items}")
@bp.refuses(404)
def list_commands(q: dict, agent_id: str):
    """The latest commands, newest first

    The agent's last `limit` commands with their status, result or error.
    """
    found = commands.list_commands(current_tenant(), agent_id, q["limit"])
    return {"items": [plain(cmd) for cmd in found]}


@bp.get("/agents/<agent_id>/commands/<command_id>")
@bp.response(200, AgentCommandSchema, description="the command")
@bp.refuses(404)
def get_command(agent_id: str, command_id: str):
    """One command

    A command's status (`queued`, `processing`, `completed`, `failed`) and its result or
    error; poll it, or follow the agent's events.
    """
    return plain(commands.get(current_tenant(), agent_id, command_id))


@bp.get("/agents/<agent_id>/status")
@bp.response(200, AgentStatusSchema, description="the status")
@bp.refuses(404)
def status(agent_id: str):
    """Status and heartbeat

    The lifecycle status, the last heartbeat the workers recorded, the current version and how
    many commands wait in the mailbox.
    """
    return queries.status(current_tenant(), agent_id)


@bp.get("/agents/<agent_id>/metrics")
@bp.response(200, AgentMetricsSchema, description="the metrics")
@bp.refuses(404)
def metrics(agent_id: str):
    """Counts and durations of commands and executions

    Per command and per capability: counts by outcome and run durations in seconds (an
    execution backed by a job runs until that job ended).
    """
    return queries.metrics(current_tenant(), agent_id)


@bp.get("/agents/<agent_id>/logs")
@bp.arguments(LimitQuerySchema, location="query")
@bp.response(200, LogListSchema, description="{items}")
@bp.refuses(404)
def logs(q: dict, agent_id: str):
    """Log lines, newest last

    The last `limit` lines the agent's hooks and capabilities logged, each with the command
    that wrote it.
    """
    return {"items": queries.logs(current_tenant(), agent_id, q["limit"])}


@bp.get("/agents/<agent_id>/events")
@bp.arguments(SinceQuerySchema, location="query")
@bp.response(200, EventListSchema, description="events in seq order")
@bp.refuses(404)
def agent_events(q: dict, agent_id: str):
    """The agent's events after `since`

    The agent's stored events with `seq > since`, in `seq` order (status changes, commands,
    executions): the same envelopes the relay sends. Paged as a job's events are (`limit`,
    `next_since`, `has_more`). A job's result or error in an execution's events is shown only
    to a key with `jobs:read`.
    """
    return queries.agent_events(current_tenant(), agent_id, q["since"], q["limit"])


@bp.get("/audit")
@bp.arguments(AuditQuerySchema, location="query")
@bp.response(200, AuditPageSchema, description="{items, next_before}")
def audit_trail(q: dict):
    """Who did what to the tenant's agents, newest first

    The audit trail: which key created, changed, commanded or deleted which agent, and which
    configured or deleted which chat provider (`provider.put`, `provider.delete`: its name and
    URL, never its key). Filter by `agent_id`; pass `next_before` as `before` for the next page.
    """
    agent_id = str(q["agent_id"]) if q.get("agent_id") else None
    items, next_before = audit.entries(current_tenant(), agent_id, q["limit"], q.get("before"))
    return {"items": items, "next_before": next_before}

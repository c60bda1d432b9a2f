"""Examples of the agent routes and the audit trail: an echo agent `scribe`, created,
changed, started, asked to `say` hello, and stopped."""

from __future__ import annotations

from api.examples import (
    AGENT_ID,
    BAD_SINCE,
    EVENTS_LIMIT_TOO_BIG,
    EXECUTE_ID,
    KEY_ID,
    KEY_PREFIX,
    START_ID,
    at,
    error,
    example,
    refused,
)
from app.agents import types

_SAY = {
    "name": "say",
    "description": "completes with {text}",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 100000}},
        "required": ["text"],
        "additionalProperties": False,
    },
    "scopes": [],
}
AGENT_REQUEST = {
    "name": "scribe",
    "type": "echo",
    "description": "says what it is told",
    "config": {"healthy": True},
}
AGENT = {
    "id": AGENT_ID,
    **AGENT_REQUEST,
    "capabilities": [_SAY],
    "version": 1,
    "status": "stopped",
    "error": None,
    "last_heartbeat": None,
    "created_at": at("30.055"),
    "updated_at": at("30.055"),
}
AGENT_V2 = {**AGENT, "description": "says it twice", "version": 2, "updated_at": at("30.088")}
AGENT_V3 = {**AGENT, "version": 3, "updated_at": at("30.111")}
AGENT_RUNNING = {
    **AGENT_V3,
    "status": "running",
    "last_heartbeat": at("31.195"),
    "updated_at": at("31.195"),
}


def _command(cid: str, command: str, params: dict, when: str) -> dict:
    return {
        "id": cid,
        "agent_id": AGENT_ID,
        "command": command,
        "params": params,
        "status": "queued",
        "result": None,
        "error": None,
        "job_id": None,
        "created_at": at(when),
        "started_at": None,
        "finished_at": None,
        "updated_at": at(when),
    }


START_QUEUED = _command(START_ID, "start", {}, "31.135")
EXECUTE_PARAMS = {"capability": "say", "input": {"text": "hello"}}
EXECUTE_QUEUED = _command(EXECUTE_ID, "execute", EXECUTE_PARAMS, "31.178")
EXECUTE_DONE = {
    **EXECUTE_QUEUED,
    "status": "completed",
    "result": {"text": "hello"},
    "started_at": at("31.225"),
    "finished_at": at("31.237"),
    "updated_at": at("31.237"),
}
START_DONE = {
    **START_QUEUED,
    "status": "completed",
    "result": {"status": "running", "changed": True},
    "started_at": at("31.164"),
    "finished_at": at("31.201"),
    "updated_at": at("31.201"),
}
STOP_QUEUED = _command(
    "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d", "stop", {"reason": "maintenance"}, "40.359"
)


def _stats(count: int, seconds: float) -> dict:
    return {
        "count": count,
        "completed": count,
        "failed": 0,
        "in_progress": 0,
        "duration_s": {"avg": seconds, "p50": seconds, "p95": seconds, "max": seconds},
    }


_NO_AGENT = error("NOT_FOUND", "no such agent")
_NO_AGENT_EXAMPLE = {"no_such_agent": example("No such agent for this tenant", _NO_AGENT)}
_LIMIT_5 = {"limit": {"last_5": example("The last five", 5)}}
_BAD_LIMIT = {
    "bad_limit": example(
        "A limit out of range",
        error(
            "VALIDATION_ERROR",
            "invalid request",
            {"limit": ["Must be greater than or equal to 1 and less than or equal to 1000."]},
        ),
    )
}
_NAME_TAKEN = error("CONFLICT", "an agent with this name exists", {"name": ["already in use"]})


def _shortcut(name: str, request: dict, queued: dict) -> dict:
    """/start, /stop and /restart: the same as POST /commands with that command."""
    return {
        "request": {
            "empty": example("No body is needed", {}),
            "with_reason": example("An optional reason, kept with the command", request),
        },
        "responses": {
            "202": {"queued": example(f"The {name} command, queued", queued)},
            "404": _NO_AGENT_EXAMPLE,
            "422": {
                "bad_params": example(
                    f"{name} takes only an optional reason",
                    error(
                        "VALIDATION_ERROR",
                        f"{name} takes only an optional reason",
                        {"params.force": ["only `reason` (a string) is accepted"]},
                    ),
                )
            },
        },
    }


def agents() -> dict:
    """The examples of the agent routes; the unknown type is refused by its plugin registry, so
    the example names the agent types this deployment has."""
    return {
        ("get", "/api/v1/agent-types"): {
            "responses": {
                "200": {
                    "types": example(
                        "The agent types (one shown), with config schema and capabilities",
                        {
                            "items": [
                                {
                                    "type": "echo",
                                    "description": "Answers `say` with the same text.",
                                    "config_schema": {
                                        "type": "object",
                                        "properties": {
                                            "healthy": {
                                                "type": "boolean",
                                                "description": "what the health hook reports",
                                            },
                                            "fail_start": {
                                                "type": "boolean",
                                                "description": "make the start hook fail",
                                            },
                                        },
                                        "additionalProperties": False,
                                    },
                                    "capabilities": [_SAY],
                                }
                            ]
                        },
                    )
                }
            }
        },
        ("post", "/api/v1/agents"): {
            "request": {"echo": example("An echo agent", AGENT_REQUEST)},
            "responses": {
                "201": {"created": example("Version 1, stopped", AGENT)},
                "409": {"name_taken": example("Names are unique per tenant", _NAME_TAKEN)},
                "422": {
                    "unknown_type": example(
                        "No agent type of that name",
                        refused(types.get, "painter"),
                    ),
                    "bad_config": example(
                        "The type's config schema refused it, field by field",
                        error(
                            "VALIDATION_ERROR",
                            "config rejected by the agent type",
                            {"config.healthy": ["'yes' is not of type 'boolean'"]},
                        ),
                    ),
                },
            },
        },
        ("get", "/api/v1/agents"): {
            "parameters": {
                "status": {"running": example("Only running agents", "running")},
                "type": {"running": example("Only echo agents", "echo")},
                "limit": {"running": example("At most 20 a page", 20)},
            },
            "responses": {
                "200": {
                    "page": example(
                        "Newest first; `next_cursor` is null on the last page",
                        {"items": [AGENT_RUNNING], "next_cursor": None},
                    )
                },
                "422": {
                    "bad_status": example(
                        "A status that does not exist",
                        error(
                            "VALIDATION_ERROR",
                            "invalid request",
                            {
                                "status": [
                                    "Must be one of: stopped, starting, running, error, inactive."
                                ]
                            },
                        ),
                    )
                },
            },
        },
        ("get", "/api/v1/agents/{agent_id}"): {
            "responses": {
                "200": {"running": example("A running agent", AGENT_RUNNING)},
                "404": _NO_AGENT_EXAMPLE,
            }
        },
        ("patch", "/api/v1/agents/{agent_id}"): {
            "request": {
                "description": example("A new description", {"description": "says it twice"})
            },
            "responses": {
                "200": {"new_version": example("Version 2; version 1 is kept", AGENT_V2)},
                "404": _NO_AGENT_EXAMPLE,
                "409": {"name_taken": example("Names are unique per tenant", _NAME_TAKEN)},
                "422": {
                    "empty": example(
                        "Nothing to change",
                        error(
                            "VALIDATION_ERROR",
                            "invalid request",
                            {"_schema": ["give at least one of name, description, config"]},
                        ),
                    )
                },
            },
        },
        ("delete", "/api/v1/agents/{agent_id}"): {"responses": {"404": _NO_AGENT_EXAMPLE}},
        ("get", "/api/v1/agents/{agent_id}/versions"): {
            "responses": {
                "200": {
                    "versions": example(
                        "Oldest first",
                        {
                            "items": [
                                {
                                    "version": 1,
                                    **{
                                        k: AGENT_REQUEST[k]
                                        for k in ("name", "description", "config")
                                    },
                                    "reason": "create",
                                    "created_by": KEY_PREFIX,
                                    "created_at": at("30.058"),
                                },
                                {
                                    "version": 2,
                                    "name": "scribe",
                                    "description": "says it twice",
                                    "config": {"healthy": True},
                                    "reason": "patch",
                                    "created_by": KEY_PREFIX,
                                    "created_at": at("30.087"),
                                },
                            ]
                        },
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
            }
        },
        ("post", "/api/v1/agents/{agent_id}/revert"): {
            "request": {"to_v1": example("Back to version 1's config", {"version": 1})},
            "responses": {
                "200": {
                    "reverted": example(
                        "Version 3, with version 1's name, description, config", AGENT_V3
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
                "422": {
                    "no_such_version": example(
                        "A version the agent never had",
                        error("VALIDATION_ERROR", "no such version", {"version": ["1..3"]}),
                    )
                },
            },
        },
        ("post", "/api/v1/agents/{agent_id}/commands"): {
            "request": {
                "start": example("Start the agent", {"command": "start"}),
                "execute": example(
                    "Run a capability (input checked against its JSON Schema first)",
                    {"command": "execute", "params": EXECUTE_PARAMS},
                ),
                "stop": example(
                    "Stop it, with a reason",
                    {"command": "stop", "params": {"reason": "maintenance"}},
                ),
            },
            "responses": {
                "202": {"queued": example("The command, queued", EXECUTE_QUEUED)},
                "403": {
                    "generate_needs_jobs_write": example(
                        "A capability that submits a job (generate) needs jobs:write too; "
                        "nothing was queued",
                        error(
                            "FORBIDDEN",
                            "this key lacks the jobs:write scope",
                            {"scope": ["requires jobs:write"]},
                        ),
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
                "409": {
                    "not_running": example(
                        "execute needs a running agent (or a start ahead in its mailbox)",
                        error(
                            "AGENT_NOT_RUNNING",
                            "agent is stopped, not running: start it first",
                            {"status": ["is stopped"]},
                        ),
                    )
                },
                "422": {
                    "bad_input": example(
                        "The capability's input schema refused it; nothing was queued",
                        error(
                            "VALIDATION_ERROR",
                            "input rejected by capability say",
                            {"params.input": ["'text' is a required property"]},
                        ),
                    )
                },
            },
        },
        ("get", "/api/v1/agents/{agent_id}/commands"): {
            "parameters": {"limit": {"last_2": example("The last two", 2)}},
            "responses": {
                "200": {"latest": example("Newest first", {"items": [EXECUTE_DONE, START_DONE]})},
                "404": _NO_AGENT_EXAMPLE,
                "422": _BAD_LIMIT,
            },
        },
        ("get", "/api/v1/agents/{agent_id}/commands/{command_id}"): {
            "responses": {
                "200": {"completed": example("An execute that completed", EXECUTE_DONE)},
                "404": {
                    **_NO_AGENT_EXAMPLE,
                    "no_such_command": example(
                        "No such command for this agent", error("NOT_FOUND", "no such command")
                    ),
                },
            }
        },
        ("post", "/api/v1/agents/{agent_id}/start"): _shortcut(
            "start",
            {"params": {"reason": "deploy"}},
            {**START_QUEUED, "params": {"reason": "deploy"}},
        ),
        ("post", "/api/v1/agents/{agent_id}/stop"): _shortcut(
            "stop", {"params": {"reason": "maintenance"}}, STOP_QUEUED
        ),
        ("post", "/api/v1/agents/{agent_id}/restart"): _shortcut(
            "restart",
            {"params": {"reason": "new config"}},
            {**STOP_QUEUED, "command": "restart", "params": {"reason": "new config"}},
        ),
        ("get", "/api/v1/agents/{agent_id}/status"): {
            "responses": {
                "200": {
                    "running": example(
                        "Running, heartbeat fresh, nothing waiting",
                        {
                            "agent_id": AGENT_ID,
                            "status": "running",
                            "last_heartbeat": at("31.195"),
                            "error": None,
                            "version": 3,
                            "queued_commands": 0,
                        },
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
            }
        },
        ("get", "/api/v1/agents/{agent_id}/metrics"): {
            "responses": {
                "200": {
                    "metrics": example(
                        "By command and by capability; durations in seconds",
                        {
                            "agent_id": AGENT_ID,
                            "commands": {
                                "execute": _stats(1, 0.012446),
                                "start": _stats(1, 0.037074),
                            },
                            "executions": {"say": _stats(1, 0.012446)},
                            "last_heartbeat": at("31.195"),
                        },
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
            }
        },
        ("get", "/api/v1/agents/{agent_id}/logs"): {
            "parameters": _LIMIT_5,
            "responses": {
                "200": {
                    "lines": example(
                        "Newest last",
                        {
                            "items": [
                                {
                                    "at": at("31.187"),
                                    "level": "info",
                                    "message": "echo agent scribe started",
                                    "command_id": START_ID,
                                },
                                {
                                    "at": at("31.236"),
                                    "level": "info",
                                    "message": "say: hello",
                                    "command_id": EXECUTE_ID,
                                },
                            ]
                        },
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
                "422": _BAD_LIMIT,
            },
        },
        ("get", "/api/v1/agents/{agent_id}/events"): {
            "parameters": {
                "since": {"after_10": example("The events after seq 10", 10)},
                "limit": {"one": example("One event a page", 1)},
            },
            "responses": {
                "200": {
                    "events": example(
                        "In seq order, as the relay sends them",
                        {
                            "items": [
                                {
                                    "event_id": "5d397b30-f86f-4fdf-8a7a-15fbef08dad0",
                                    "event_type": "agent.capability.execution.completed",
                                    "seq": 13,
                                    "timestamp": at("31.240"),
                                    "source_service": "worker",
                                    "subject": {"type": "agent", "id": AGENT_ID},
                                    "payload": {
                                        "agent_id": AGENT_ID,
                                        "command_id": EXECUTE_ID,
                                        "capability": "say",
                                        "job_id": None,
                                        "result": {"text": "hello"},
                                    },
                                    "metadata": {
                                        "tenant": "acme",
                                        "correlation_id": None,
                                        "card_id": None,
                                        "version": "1.0",
                                    },
                                }
                            ],
                            "next_since": 13,
                            "has_more": False,
                        },
                    )
                },
                "404": _NO_AGENT_EXAMPLE,
                "422": {
                    "bad_since": example("A negative seq", BAD_SINCE),
                    "too_many": example("More than 1,000 a page", EVENTS_LIMIT_TOO_BIG),
                },
            },
        },
        ("get", "/api/v1/audit"): {
            "parameters": {
                "agent_id": {"one_agent": example("One agent's entries", AGENT_ID)},
                "limit": {
                    "one_agent": example("At most 2 a page", 2),
                    "next_page": example("At most 2 a page", 2),
                },
                "before": {"next_page": example("The `next_before` of the page before", 4)},
            },
            "responses": {
                "200": {
                    "page": example(
                        "Newest first; `next_before` continues, null on the last page",
                        {
                            "items": [
                                {
                                    "id": 5,
                                    "at": at("31.185"),
                                    "key": {"id": KEY_ID, "prefix": KEY_PREFIX},
                                    "action": "agent.command.execute",
                                    "subject": {"type": "agent", "id": AGENT_ID},
                                    "details": {"command_id": EXECUTE_ID, "params": EXECUTE_PARAMS},
                                },
                                {
                                    "id": 4,
                                    "at": at("31.145"),
                                    "key": {"id": KEY_ID, "prefix": KEY_PREFIX},
                                    "action": "agent.command.start",
                                    "subject": {"type": "agent", "id": AGENT_ID},
                                    "details": {"command_id": START_ID, "params": {}},
                                },
                            ],
                            "next_before": 4,
                        },
                    )
                },
                "422": {
                    "bad_agent_id": example(
                        "agent_id must be a UUID",
                        error(
                            "VALIDATION_ERROR",
                            "invalid request",
                            {"agent_id": ["Not a valid UUID."]},
                        ),
                    )
                },
            },
        },
    }

"""The named examples of the OpenAPI document: for every operation, the request a client sends
and the answers the API gives, as CONTRACT.md describes them.

They tell one story (a tenant `acme`, one sleep job, one echo agent called `scribe`), with the
values a real run gave. Tests keep them true: each is validated against its own schema in the
document, and the requests are replayed against the real app, which must answer with the
documented status and the same fields (tests/integration/test_openapi_examples.py).

Query parameters carry their examples by name: the parameters whose examples share a name
make one request together (`filter`: `status=queued&kind=sleep&limit=20`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from app import pages


def example(summary: str, value) -> dict:
    """An OpenAPI Example Object."""
    return {"summary": summary, "value": value}


def error(code: str, message: str, details: dict | None = None) -> dict:
    """The error envelope the API answers with (api/errors.py)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


# --- the story's ids and times --------------------------------------------------------------

JOB_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
CORRELATION_ID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
AGENT_ID = "9b2d4c1a-3e5f-4a6b-8c7d-0e1f2a3b4c5d"
START_ID = "1d6f0e2a-8b3c-4d5e-9f60-7a8b9c0d1e2f"
EXECUTE_ID = "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8"
KEY_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
KEY_PREFIX = "orc_9fQ2-xWbT"
_CREATED = datetime(2026, 11, 21, 8, 45, 23, 123456, tzinfo=UTC)
# A cursor as the API issues it (after the job above), so the example is one the API accepts.
CURSOR = pages.encode_cursor({"created_at": _CREATED, "id": JOB_ID})


def _at(seconds: str) -> str:
    return f"2026-11-21T08:45:{seconds}Z"


# --- jobs ---------------------------------------------------------------------------------

SLEEP_REQUEST = {"kind": "sleep", "params": {"seconds": 3, "steps": 3}, "card_id": "card-42"}
ECHO_REQUEST = {"kind": "echo", "params": {"prompt": "a lighthouse at dusk"}, "priority": 7}

JOB_QUEUED = {
    "id": JOB_ID,
    "kind": "sleep",
    "params": {"seconds": 3, "steps": 3},
    "status": "queued",
    "progress": 0.0,
    "result": None,
    "result_url": None,
    "error": None,
    "attempts": 0,
    "max_retries": 3,
    "priority": 5,
    "card_id": "card-42",
    "correlation_id": CORRELATION_ID,
    "timeout_s": 3600.0,
    "cancel_requested": False,
    "created_at": _at("23.123"),
    "started_at": None,
    "finished_at": None,
    "updated_at": _at("23.123"),
}
JOB_PROCESSING = {
    **JOB_QUEUED,
    "status": "processing",
    "progress": 0.333,
    "attempts": 1,
    "started_at": _at("23.160"),
    "updated_at": _at("24.170"),
}
JOB_COMPLETED = {
    **JOB_PROCESSING,
    "status": "completed",
    "progress": 1.0,
    "result": {"slept": 3},
    "finished_at": _at("26.190"),
    "updated_at": _at("26.190"),
}
JOB_CANCELLING = {**JOB_PROCESSING, "cancel_requested": True, "updated_at": _at("24.500")}
JOB_FAILED = {
    **JOB_PROCESSING,
    "kind": "fail",
    "params": {"message": "model refused the prompt"},
    "card_id": None,
    "max_retries": 0,
    "status": "failed",
    "progress": 0.0,
    "error": {"code": "GENERATOR_ERROR", "message": "model refused the prompt"},
    "finished_at": _at("23.190"),
    "updated_at": _at("23.190"),
}
JOB_RETRIED = {**JOB_FAILED, "status": "queued", "error": None, "finished_at": None}


def _job_event(seq: int, event_type: str, source: str, payload: dict, at: str) -> dict:
    return {
        "event_id": f"0b7e54c1-2f6a-4d8e-9c3b-5a1d7e9f20{seq:02d}",
        "event_type": event_type,
        "seq": seq,
        "timestamp": _at(at),
        "source_service": source,
        "subject": {"type": "job", "id": JOB_ID},
        "payload": {"job_id": JOB_ID, **payload},
        "metadata": {
            "tenant": "acme",
            "correlation_id": CORRELATION_ID,
            "card_id": "card-42",
            "version": "1.0",
        },
    }


JOB_EVENTS = [
    _job_event(
        4,
        "job.progress.updated",
        "worker",
        {"progress": 0.6666666666666666, "message": "step 2/3"},
        "25.180",
    ),
    _job_event(
        5, "job.progress.updated", "worker", {"progress": 1.0, "message": "step 3/3"}, "26.185"
    ),
    _job_event(
        6,
        "job.status.updated",
        "worker",
        {
            "status": "completed",
            "previous_status": "processing",
            "attempt": 1,
            "result": {"slept": 3},
            "result_url": None,
        },
        "26.190",
    ),
]

_NO_JOB = error("NOT_FOUND", "no such job")
_BAD_SINCE = error(
    "VALIDATION_ERROR",
    "invalid request",
    {"since": ["Must be greater than or equal to 0 and less than or equal to 2147483647."]},
)

JOBS = {
    ("post", "/api/v1/jobs"): {
        "request": {
            "sleep": example("A sleep job that reports progress three times", SLEEP_REQUEST),
            "echo": example("An echo job: its result is its params", ECHO_REQUEST),
        },
        "parameters": {
            "Idempotency-Key": {
                "key": example("Safe to send again: the same key finds the same job", "order-4711")
            }
        },
        "responses": {
            "202": {"queued": example("The job, queued", JOB_QUEUED)},
            "200": {
                "replayed": example(
                    "The Idempotency-Key was used before: the original job, no second one",
                    JOB_PROCESSING,
                )
            },
            "422": {
                "bad_field": example(
                    "A field out of range, named in details",
                    error(
                        "VALIDATION_ERROR",
                        "invalid request",
                        {
                            "priority": [
                                "Must be greater than or equal to 0 and less than or equal to 9."
                            ]
                        },
                    ),
                ),
                "unknown_kind": example(
                    "No generator has this kind; nothing was created",
                    error(
                        "VALIDATION_ERROR",
                        "unknown job kind",
                        {"kind": ["unknown kind; known: echo, fail, http, sleep"]},
                    ),
                ),
                "bad_params": example(
                    "The generator's params schema refused them",
                    error(
                        "VALIDATION_ERROR",
                        "params rejected by the generator",
                        {"params.seconds": ["-1 is less than the minimum of 0"]},
                    ),
                ),
            },
        },
    },
    ("get", "/api/v1/jobs"): {
        "parameters": {
            "status": {"filter": example("Only queued jobs", "queued")},
            "kind": {"filter": example("Only sleep jobs", "sleep")},
            "limit": {
                "filter": example("At most 20 a page", 20),
                "next_page": example("At most 20 a page", 20),
            },
            "cursor": {"next_page": example("The `next_cursor` of the page before", CURSOR)},
            "card_id": {"by_card": example("The jobs of one card", "card-42")},
        },
        "responses": {
            "200": {
                "page": example(
                    "Newest first; `next_cursor` is null on the last page",
                    {"items": [JOB_COMPLETED], "next_cursor": CURSOR},
                )
            },
            "422": {
                "bad_cursor": example(
                    "A cursor the API did not issue",
                    error(
                        "VALIDATION_ERROR",
                        "bad cursor",
                        {"cursor": ["not a cursor this API issued"]},
                    ),
                ),
                "bad_status": example(
                    "A status that does not exist",
                    error(
                        "VALIDATION_ERROR",
                        "invalid request",
                        {
                            "status": [
                                "Must be one of: queued, processing, retrying, completed, "
                                "failed, cancelled."
                            ]
                        },
                    ),
                ),
            },
        },
    },
    ("get", "/api/v1/jobs/{job_id}"): {
        "responses": {
            "200": {
                "completed": example("A completed job with its result", JOB_COMPLETED),
                "failed": example("A failed job: the generator's own message", JOB_FAILED),
            },
            "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
        },
    },
    ("post", "/api/v1/jobs/{job_id}/cancel"): {
        "request": {"empty": example("No body is needed; an empty object is accepted", {})},
        "responses": {
            "202": {
                "cancelling": example(
                    "A processing job: it stops at its next check and ends `cancelled`",
                    JOB_CANCELLING,
                )
            },
            "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
            "409": {
                "terminal": example(
                    "The job already ended",
                    error(
                        "INVALID_TRANSITION",
                        "a completed job cannot become cancelled",
                        {"status": ["is completed"]},
                    ),
                )
            },
        },
    },
    ("post", "/api/v1/jobs/{job_id}/retry"): {
        "request": {"empty": example("No body is needed; an empty object is accepted", {})},
        "responses": {
            "202": {
                "queued_again": example("Queued again; `attempts` keeps counting", JOB_RETRIED)
            },
            "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
            "409": {
                "not_ended": example(
                    "Only a failed or cancelled job can be retried",
                    error(
                        "INVALID_TRANSITION",
                        "a completed job cannot become queued",
                        {"status": ["is completed"]},
                    ),
                )
            },
        },
    },
    ("get", "/api/v1/jobs/{job_id}/events"): {
        "parameters": {"since": {"after_3": example("The events after seq 3", 3)}},
        "responses": {
            "200": {
                "events": example("In seq order, as the relay sends them", {"items": JOB_EVENTS})
            },
            "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
            "422": {"bad_since": example("A negative seq", _BAD_SINCE)},
        },
    },
    ("get", "/api/v1/jobs/{job_id}/result"): {
        "responses": {
            "200": {
                "echo": example(
                    "An echo job's artifact: its params, as application/json",
                    ECHO_REQUEST["params"],
                )
            },
            "404": {
                "no_artifact": example(
                    "The job wrote no artifact (yet)",
                    error("NOT_FOUND", "this job has no result artifact"),
                ),
                "no_such_job": example("No such job for this tenant", _NO_JOB),
            },
        },
    },
    ("get", "/api/v1/event-types"): {
        "responses": {
            "200": {
                "catalogue": example(
                    "Every event type with its payload's JSON Schema (one shown)",
                    {
                        "items": [
                            {
                                "event_type": "job.progress.updated",
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "job_id": {"type": "string", "format": "uuid"},
                                        "progress": {"type": "number", "minimum": 0, "maximum": 1},
                                        "message": {"type": "string"},
                                    },
                                    "required": ["job_id", "progress"],
                                },
                            }
                        ]
                    },
                )
            }
        },
    },
}


# --- agents -------------------------------------------------------------------------------

_SAY = {
    "name": "say",
    "description": "completes with {text}",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 100000}},
        "required": ["text"],
        "additionalProperties": False,
    },
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
    "created_at": _at("30.055"),
    "updated_at": _at("30.055"),
}
AGENT_V2 = {**AGENT, "description": "says it twice", "version": 2, "updated_at": _at("30.088")}
AGENT_V3 = {**AGENT, "version": 3, "updated_at": _at("30.111")}
AGENT_RUNNING = {
    **AGENT_V3,
    "status": "running",
    "last_heartbeat": _at("31.195"),
    "updated_at": _at("31.195"),
}


def _command(cid: str, command: str, params: dict, at: str) -> dict:
    return {
        "id": cid,
        "agent_id": AGENT_ID,
        "command": command,
        "params": params,
        "status": "queued",
        "result": None,
        "error": None,
        "job_id": None,
        "created_at": _at(at),
        "started_at": None,
        "finished_at": None,
        "updated_at": _at(at),
    }


START_QUEUED = _command(START_ID, "start", {}, "31.135")
EXECUTE_PARAMS = {"capability": "say", "input": {"text": "hello"}}
EXECUTE_QUEUED = _command(EXECUTE_ID, "execute", EXECUTE_PARAMS, "31.178")
EXECUTE_DONE = {
    **EXECUTE_QUEUED,
    "status": "completed",
    "result": {"text": "hello"},
    "started_at": _at("31.225"),
    "finished_at": _at("31.237"),
    "updated_at": _at("31.237"),
}
START_DONE = {
    **START_QUEUED,
    "status": "completed",
    "result": {"status": "running", "changed": True},
    "started_at": _at("31.164"),
    "finished_at": _at("31.201"),
    "updated_at": _at("31.201"),
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


AGENTS = {
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
                    error(
                        "VALIDATION_ERROR",
                        "unknown agent type",
                        {"type": ["unknown type; known: echo, generator"]},
                    ),
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
        "request": {"description": example("A new description", {"description": "says it twice"})},
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
                                **{k: AGENT_REQUEST[k] for k in ("name", "description", "config")},
                                "reason": "create",
                                "created_by": KEY_PREFIX,
                                "created_at": _at("30.058"),
                            },
                            {
                                "version": 2,
                                "name": "scribe",
                                "description": "says it twice",
                                "config": {"healthy": True},
                                "reason": "patch",
                                "created_by": KEY_PREFIX,
                                "created_at": _at("30.087"),
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
                "Stop it, with a reason", {"command": "stop", "params": {"reason": "maintenance"}}
            ),
        },
        "responses": {
            "202": {"queued": example("The command, queued", EXECUTE_QUEUED)},
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
        "start", {"params": {"reason": "deploy"}}, {**START_QUEUED, "params": {"reason": "deploy"}}
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
                        "last_heartbeat": _at("31.195"),
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
                        "last_heartbeat": _at("31.195"),
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
                                "at": _at("31.187"),
                                "level": "info",
                                "message": "echo agent scribe started",
                                "command_id": START_ID,
                            },
                            {
                                "at": _at("31.236"),
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
        "parameters": {"since": {"after_10": example("The events after seq 10", 10)}},
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
                                "timestamp": _at("31.240"),
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
                        ]
                    },
                )
            },
            "404": _NO_AGENT_EXAMPLE,
            "422": {"bad_since": example("A negative seq", _BAD_SINCE)},
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
                                "at": _at("31.185"),
                                "key": {"id": KEY_ID, "prefix": KEY_PREFIX},
                                "action": "agent.command.execute",
                                "subject": {"type": "agent", "id": AGENT_ID},
                                "details": {"command_id": EXECUTE_ID, "params": EXECUTE_PARAMS},
                            },
                            {
                                "id": 4,
                                "at": _at("31.145"),
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
                        "VALIDATION_ERROR", "invalid request", {"agent_id": ["Not a valid UUID."]}
                    ),
                )
            },
        },
    },
}


# --- operations ---------------------------------------------------------------------------

METRICS_TEXT = """# HELP orchestra_jobs Jobs by kind and status
# TYPE orchestra_jobs gauge
orchestra_jobs{kind="sleep",status="completed"} 12.0
orchestra_jobs{kind="echo",status="queued"} 3.0
# HELP orchestra_job_run_seconds Run time of the jobs completed in the last hour
# TYPE orchestra_job_run_seconds summary
orchestra_job_run_seconds_count{kind="sleep"} 12.0
orchestra_job_run_seconds_sum{kind="sleep"} 36.41
"""

OPERATIONS_ROUTES = {
    ("get", "/health/liveness"): {
        "responses": {"200": {"alive": example("The process runs", {"status": "alive"})}}
    },
    ("get", "/health/readiness"): {
        "responses": {
            "200": {
                "healthy": example(
                    "Every dependency answered in time",
                    {
                        "status": "healthy",
                        "checks": {"database": "ok", "redis": "ok", "broker": "ok"},
                    },
                )
            },
            "503": {
                "database_down": example(
                    "The failing checks are named",
                    {
                        "status": "unhealthy",
                        "failed": ["database"],
                        "checks": {
                            "database": "error: OperationalError",
                            "redis": "ok",
                            "broker": "ok",
                        },
                    },
                )
            },
        }
    },
    ("get", "/metrics"): {
        "responses": {"200": {"scrape": example("Prometheus text (an excerpt)", METRICS_TEXT)}}
    },
    ("get", "/api/v1/openapi.json"): {
        "responses": {
            "200": {
                "document": example(
                    "This document (cut short)",
                    {
                        "openapi": "3.0.3",
                        "info": {"title": "Orchestra", "version": "1.0.0"},
                        "paths": {
                            "/health/liveness": {
                                "get": {
                                    "summary": "Liveness",
                                    "responses": {"200": {"description": "alive"}},
                                }
                            }
                        },
                        "components": {
                            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
                        },
                    },
                )
            }
        }
    },
}


# --- refusals any route may give ----------------------------------------------------------


def _area(path: str) -> str:
    """The scope area of an `/api/v1` path: the blueprint that serves it."""
    return "jobs" if path.startswith(("/api/v1/jobs", "/api/v1/event-types")) else "agents"


def shared_errors(path: str, method: str) -> dict[str, dict]:
    """The examples of the refusals every route of its kind shares, by status."""
    scope = f"{_area(path)}:{'read' if method == 'get' else 'write'}"
    return {
        "400": {
            "bad_json": example(
                "The body is not JSON",
                error(
                    "BAD_JSON",
                    "the body is not valid JSON",
                    {
                        "_schema": [
                            "Expecting property name enclosed in double quotes: line 1 column 2 "
                            "(char 1)"
                        ]
                    },
                ),
            )
        },
        "401": {
            "missing_key": example(
                "No `Authorization: Bearer` header",
                error("UNAUTHORIZED", "missing or malformed bearer token"),
            ),
            "unknown_key": example(
                "A key the API does not know", error("UNAUTHORIZED", "unknown API key")
            ),
        },
        "403": {
            "missing_scope": example(
                "The key lacks the scope",
                error(
                    "FORBIDDEN",
                    f"this key lacks the {scope} scope",
                    {"scope": [f"requires {scope}"]},
                ),
            )
        },
        "413": {
            "too_large": example(
                "Over MAX_BODY_BYTES (256 KiB by default)",
                error(
                    "PAYLOAD_TOO_LARGE", "The data value transmitted exceeds the capacity limit."
                ),
            )
        },
        "415": {
            "not_json": example(
                "A body that is not application/json",
                error("UNSUPPORTED_MEDIA_TYPE", "the body must be application/json"),
            )
        },
        "422": {}
        if method == "get"
        else {
            "not_an_object": example(
                "The body must be a JSON object",
                error(
                    "VALIDATION_ERROR",
                    "the body must be a JSON object",
                    {"_schema": ["expected an object"]},
                ),
            )
        },
        "429": {
            "rate_limited": example(
                "Over the key's RATE_LIMIT; Retry-After says when to come back",
                error("RATE_LIMITED", "600 per 1 minute"),
            )
        },
        "503": {
            "database_down": example(
                "Postgres did not answer; nothing was written",
                error(
                    "DEPENDENCY_UNAVAILABLE",
                    "database is unavailable",
                    {"dependency": ["connection refused"]},
                ),
            )
        },
    }


EXAMPLES = {**JOBS, **AGENTS, **OPERATIONS_ROUTES}

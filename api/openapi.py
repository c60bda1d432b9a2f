"""The OpenAPI document (apispec + marshmallow) and a docs page that renders it."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify

from api import schemas

bp = Blueprint("docs", __name__)

_JOB = {"$ref": "#/components/schemas/Job"}
_ERR = {"$ref": "#/components/schemas/ErrorEnvelope"}
_ID = [
    {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
]


def _resp(status: int, description: str, schema=None) -> dict:
    out = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return {str(status): out}


def _errors(*statuses: int) -> dict:
    out = {**_resp(401, "missing or unknown key", _ERR), **_resp(429, "over the rate limit", _ERR)}
    for s in statuses:
        out.update(_resp(s, "error", _ERR))
    return out


# Routes that take no input accept an empty JSON object (or nothing).
_EMPTY_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
    }
}

# (path, method, summary, extra operation fields, responses)
_OPERATIONS = [
    (
        "/api/v1/jobs",
        "post",
        "Submit a generation job",
        {
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": schemas.JobSubmitSchema}},
            },
        },
        {
            **_resp(202, "queued", _JOB),
            **_resp(200, "idempotent replay", _JOB),
            **_errors(400, 413, 415, 422),
        },
    ),
    (
        "/api/v1/jobs",
        "get",
        "List jobs, newest first",
        {"parameters": [{"in": "query", "schema": schemas.JobListQuerySchema}]},
        {**_resp(200, "a page", {"$ref": "#/components/schemas/JobPage"}), **_errors(422)},
    ),
    (
        "/api/v1/jobs/{job_id}",
        "get",
        "Get a job",
        {"parameters": _ID},
        {**_resp(200, "the job", _JOB), **_errors(404)},
    ),
    (
        "/api/v1/jobs/{job_id}/cancel",
        "post",
        "Cancel a job",
        {"parameters": _ID, **_EMPTY_BODY},
        {**_resp(202, "cancelled or cancelling", _JOB), **_errors(404, 409)},
    ),
    (
        "/api/v1/jobs/{job_id}/retry",
        "post",
        "Retry a failed or cancelled job",
        {"parameters": _ID, **_EMPTY_BODY},
        {**_resp(202, "queued again", _JOB), **_errors(404, 409)},
    ),
    (
        "/api/v1/jobs/{job_id}/events",
        "get",
        "A job's events after `since`",
        {"parameters": _ID + [{"in": "query", "schema": schemas.SinceQuerySchema}]},
        {
            **_resp(200, "events in seq order", {"$ref": "#/components/schemas/EventList"}),
            **_errors(404, 422),
        },
    ),
    (
        "/api/v1/jobs/{job_id}/result",
        "get",
        "The artifact the generator wrote",
        {"parameters": _ID},
        {"200": {"description": "the artifact, with its own content type"}, **_errors(404)},
    ),
    (
        "/api/v1/generators",
        "get",
        "Job kinds and the JSON Schema of their params",
        {},
        {**_resp(200, "{items: [{kind, description, params_schema}]}"), **_errors()},
    ),
    (
        "/api/v1/event-types",
        "get",
        "Event types and the JSON Schema of their payloads",
        {},
        {**_resp(200, "{items: [{event_type, schema}]}"), **_errors()},
    ),
    ("/health/liveness", "get", "Liveness", {"security": []}, _resp(200, "alive")),
    ("/metrics", "get", "Prometheus metrics", {"security": []}, _resp(200, "text exposition")),
    (
        "/health/readiness",
        "get",
        "Readiness of database, redis and broker",
        {"security": []},
        {**_resp(200, "healthy"), **_resp(503, "a dependency failed")},
    ),
]

_AGENT = {"$ref": "#/components/schemas/Agent"}
_COMMAND = {"$ref": "#/components/schemas/AgentCommand"}
_AGENT_ID = [
    {
        "name": "agent_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
]


def _body(schema) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _agent_op(suffix, method, summary, extra, ok, *errors) -> tuple:
    """An operation on `/api/v1/agents/{agent_id}<suffix>`: 404 for another tenant's id."""
    params = _AGENT_ID + extra.pop("parameters", [])
    return (
        f"/api/v1/agents/{{agent_id}}{suffix}",
        method,
        summary,
        {"parameters": params, **extra},
        {**ok, **_errors(404, *errors)},
    )


_ITEMS = {"type": "object", "properties": {"items": {"type": "array", "items": {}}}}
_OPERATIONS += [
    (
        "/api/v1/agent-types",
        "get",
        "Agent types, their config schema and capabilities",
        {},
        {**_resp(200, "{items}", _ITEMS), **_errors()},
    ),
    (
        "/api/v1/agents",
        "post",
        "Register an agent",
        _body(schemas.AgentCreateSchema),
        {**_resp(201, "created: version 1, stopped", _AGENT), **_errors(400, 409, 413, 415, 422)},
    ),
    (
        "/api/v1/agents",
        "get",
        "List agents, newest first",
        {"parameters": [{"in": "query", "schema": schemas.AgentListQuerySchema}]},
        {**_resp(200, "{items, next_cursor}", _ITEMS), **_errors(422)},
    ),
    _agent_op("", "get", "Get an agent", {}, _resp(200, "the agent", _AGENT)),
    _agent_op(
        "",
        "patch",
        "Change an agent: a new version",
        _body(schemas.AgentPatchSchema),
        _resp(200, "the new version", _AGENT),
        409,
        415,
        422,
    ),
    _agent_op(
        "",
        "delete",
        "Delete an agent (a live one is stopped first)",
        {},
        {"204": {"description": "deleted"}},
    ),
    _agent_op("/versions", "get", "Every version, oldest first", {}, _resp(200, "{items}", _ITEMS)),
    _agent_op(
        "/revert",
        "post",
        "A new version equal to an old one's config",
        _body(schemas.AgentRevertSchema),
        _resp(200, "the new version", _AGENT),
        415,
        422,
    ),
    _agent_op(
        "/commands",
        "post",
        "Queue a command (execute input checked first)",
        _body(schemas.CommandSchema),
        _resp(202, "queued", _COMMAND),
        409,
        415,
        422,
    ),
    _agent_op(
        "/commands",
        "get",
        "The latest commands, newest first",
        {"parameters": [{"in": "query", "schema": schemas.LimitQuerySchema}]},
        _resp(200, "{items}", _ITEMS),
        422,
    ),
    _agent_op(
        "/commands/{command_id}",
        "get",
        "One command",
        {
            "parameters": [
                {
                    "name": "command_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ]
        },
        _resp(200, "the command", _COMMAND),
    ),
    *[
        _agent_op(
            f"/{name}",
            "post",
            f"Queue a {name} command",
            {
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": schemas.ShortcutSchema}},
                }
            },
            _resp(202, "queued", _COMMAND),
            415,
            422,
        )
        for name in ("start", "stop", "restart")
    ],
    _agent_op("/status", "get", "Status and heartbeat", {}, _resp(200, "the status")),
    _agent_op(
        "/metrics",
        "get",
        "Counts and durations of commands and executions",
        {},
        _resp(200, "the metrics"),
    ),
    _agent_op(
        "/logs",
        "get",
        "Log lines, newest last",
        {"parameters": [{"in": "query", "schema": schemas.LimitQuerySchema}]},
        _resp(200, "{items}", _ITEMS),
        422,
    ),
    _agent_op(
        "/events",
        "get",
        "The agent's events after `since`",
        {"parameters": [{"in": "query", "schema": schemas.SinceQuerySchema}]},
        _resp(200, "events in seq order", {"$ref": "#/components/schemas/EventList"}),
        422,
    ),
    (
        "/api/v1/audit",
        "get",
        "Who did what to the tenant's agents, newest first",
        {"parameters": [{"in": "query", "schema": schemas.AuditQuerySchema}]},
        {**_resp(200, "{items, next_before}", _ITEMS), **_errors(422)},
    ),
]


# Any route that reads a body can refuse it as bad JSON, too large, not JSON, or invalid.
_BODY_ERRORS = (400, 413, 415, 422)


def _common_errors(method: str, op: dict) -> None:
    """Add the refusals every route (414), every authenticated route (403: scope) or every
    body-reading route shares."""
    op["responses"].setdefault(
        "414", {"description": "request line longer than the server accepts (from gunicorn)"}
    )
    if op["security"]:
        op["responses"].setdefault("403", _resp(403, "the key lacks the scope", _ERR)["403"])
    if method in ("post", "patch"):
        for status in _BODY_ERRORS:
            op["responses"].setdefault(
                str(status), _resp(status, "refused body", _ERR)[str(status)]
            )


def build_spec() -> dict:
    """The OpenAPI 3 document of every route."""
    spec = APISpec(
        title="Orchestra",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Generation jobs and agent commands on Celery; see CONTRACT.md."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in [
        ("JobSubmit", schemas.JobSubmitSchema),
        ("Job", schemas.JobSchema),
        ("JobPage", schemas.JobPageSchema),
        ("JobListQuery", schemas.JobListQuerySchema),
        ("SinceQuery", schemas.SinceQuerySchema),
        ("Event", schemas.EventSchema),
        ("EventList", schemas.EventListSchema),
        ("ErrorEnvelope", schemas.ErrorEnvelopeSchema),
        ("Agent", schemas.AgentSchema),
        ("AgentCommand", schemas.AgentCommandSchema),
    ]:
        spec.components.schema(name, schema=schema)
    paths: dict[str, dict] = {}
    for path, method, summary, extra, responses in _OPERATIONS:
        op = {
            "summary": summary,
            "responses": dict(responses),
            "security": [{"bearer": []}],
            **extra,
        }
        _common_errors(method, op)
        paths.setdefault(path, {})[method] = op
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Orchestra API</title>
<meta http-equiv="Content-Security-Policy" content="img-src 'self' data: blob:">
</head>
<body><redoc spec-url="/api/v1/openapi.json"></redoc>
<script src="/console/vendor/redoc.standalone.js"></script>
</body></html>"""


@bp.get("/api/v1/openapi.json")
def openapi_json():
    """The OpenAPI document (public: it holds no tenant data)."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs():
    """A page that renders the OpenAPI document (ReDoc)."""
    return Response(_DOCS_HTML, content_type="text/html")

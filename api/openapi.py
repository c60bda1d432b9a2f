"""The OpenAPI document (apispec + marshmallow) and a docs page that renders it.

The operations are declared here; their named examples live in api/openapi_examples/."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify

from api import openapi_examples, schemas
from app import config

bp = Blueprint("docs", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


_JOB = _ref("Job")
_ERR = _ref("ErrorEnvelope")
_AGENT = _ref("Agent")
_COMMAND = _ref("AgentCommand")


def _path_id(name: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


_ID = [_path_id("job_id")]


def _resp(status: int, description: str, schema=None, media: str = "application/json") -> dict:
    out = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return {str(status): out}


def _errors(*statuses: int) -> dict:
    """The refusals of an authenticated route: 401, 429 and 503 always, plus `statuses`."""
    out = {
        **_resp(401, "missing or unknown key", _ERR),
        **_resp(429, "over the rate limit", _ERR),
        **_resp(503, "Postgres or Redis unreachable", _ERR),
    }
    for s in statuses:
        out.update(_resp(s, "error", _ERR))
    return out


def _body(schema, required: bool = True) -> dict:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _query(schema) -> dict:
    """Query parameters from a marshmallow schema (apispec expands it, one per field)."""
    return {"parameters": [{"in": "query", "schema": schema}]}


# Routes that take no input accept an empty JSON object (or nothing).
_EMPTY_BODY = _body({"type": "object", "maxProperties": 0}, required=False)

# (path, method, summary, description, extra operation fields, responses)
_OPERATIONS = [
    (
        "/api/v1/jobs",
        "post",
        "Submit a generation job",
        "Queues a job of a generator `kind` (202, with `Location`). `params` are checked "
        "against the generator's schema first: an unknown kind or refused params is a 422 and "
        "no job is made. With an `Idempotency-Key` this tenant used before, the answer is 200 "
        "with the original job, and no second job is made. Built-in kinds: `echo` (any "
        "params; the result is the params), `sleep` `{seconds (at most 3600), steps? (at "
        "most 100)}`, `fail` `{message, transient?, times?}` and `http` `{url, payload?, "
        "poll_url?}`; plugins add more. `timeout_s` may not exceed the deployment's "
        "`MAX_TIMEOUT_S` (the document's maximum).",
        {
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
            ],
            **_body(schemas.JobSubmitSchema),
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
        "The tenant's jobs, filtered by `status`, `kind` and `card_id`, newest first. Keyset "
        "pagination: pass the page's `next_cursor` as `cursor` for the next one; it is null on "
        "the last page.",
        _query(schemas.JobListQuerySchema),
        {**_resp(200, "a page", _ref("JobPage")), **_errors(422)},
    ),
    (
        "/api/v1/jobs/{job_id}",
        "get",
        "Get a job",
        "One job with its status, progress, attempts and result or error. Another tenant's job "
        "answers 404.",
        {"parameters": _ID},
        {**_resp(200, "the job", _JOB), **_errors(404)},
    ),
    (
        "/api/v1/jobs/{job_id}/cancel",
        "post",
        "Cancel a job",
        "A queued job never runs; a processing one stops at its next check and ends "
        "`cancelled` (`cancel_requested` shows it is on its way). 409 if the job already ended.",
        {"parameters": _ID, **_EMPTY_BODY},
        {**_resp(202, "cancelled or cancelling", _JOB), **_errors(404, 409)},
    ),
    (
        "/api/v1/jobs/{job_id}/retry",
        "post",
        "Retry a failed or cancelled job",
        "Puts a failed or cancelled job back in `queued`; `attempts` keeps counting. 409 for "
        "any other status.",
        {"parameters": _ID, **_EMPTY_BODY},
        {**_resp(202, "queued again", _JOB), **_errors(404, 409)},
    ),
    (
        "/api/v1/jobs/{job_id}/events",
        "get",
        "A job's events after `since`",
        "The job's stored events with `seq > since`, in `seq` order: the same envelopes the "
        "relay sends, so a client can catch up and then follow live. Paged: at most `limit` "
        "(default 100, at most 1,000) an answer; while `has_more`, ask again with "
        "`since=next_since`.",
        {"parameters": _ID + _query(schemas.SinceQuerySchema)["parameters"]},
        {**_resp(200, "events in seq order", _ref("EventList")), **_errors(404, 422)},
    ),
    (
        "/api/v1/jobs/{job_id}/result",
        "get",
        "The artifact the generator wrote",
        "The bytes a generator stored for the job, with their own content type (`echo` writes "
        "its params as JSON). 404 if the job wrote none.",
        {"parameters": _ID},
        {
            "200": {
                "description": "the artifact, with its own content type",
                "content": {
                    "application/json": {"schema": {}},
                    "*/*": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **_errors(404),
        },
    ),
    (
        "/api/v1/generators",
        "get",
        "Job kinds and the JSON Schema of their params",
        "Every generator a job's `kind` may name, built-in or plugin, with a one-line "
        "description and the JSON Schema its `params` must pass (the console builds its "
        "submit form from it).",
        {},
        {**_resp(200, "{items: [{kind, description, params_schema}]}", _ref("GeneratorList")),
         **_errors()},
    ),
    (
        "/api/v1/event-types",
        "get",
        "Event types and the JSON Schema of their payloads",
        "The event catalogue: every `event_type` the API, workers and relay emit, with the "
        "JSON Schema its `payload` follows.",
        {},
        {**_resp(200, "{items: [{event_type, schema}]}", _ref("EventTypeList")), **_errors()},
    ),
    (
        "/health/liveness",
        "get",
        "Liveness",
        "200 while the process runs; it checks nothing else. No key needed.",
        {"security": []},
        _resp(200, "alive", _ref("Liveness")),
    ),
    (
        "/metrics",
        "get",
        "Prometheus metrics",
        "Prometheus text exposition: jobs by kind and status, run durations, queue depth, "
        "outbox backlog, agents and commands. Jobs and commands by status are as the sweep "
        "last counted them (every `METRICS_COUNTS_INTERVAL_S`; `orchestra_counts_age_seconds` "
        "says how long ago), so a scrape scans no table. No key needed.",
        {"security": []},
        _resp(200, "text exposition", {"type": "string"}, media="text/plain"),
    ),
    (
        "/health/readiness",
        "get",
        "Readiness of database, redis and broker",
        "200 when Postgres, Redis and the broker each answer within the dependency timeout; "
        "503 naming the checks that failed. No key needed.",
        {"security": []},
        {
            **_resp(200, "healthy", _ref("Readiness")),
            **_resp(503, "a dependency failed", _ref("Readiness")),
        },
    ),
    (
        "/api/v1/openapi.json",
        "get",
        "This OpenAPI document",
        "The OpenAPI 3 document of every route, rendered at `/docs`. No key needed.",
        {"security": []},
        _resp(200, "the document", {"type": "object"}),
    ),
]

_AGENT_ID = [_path_id("agent_id")]


def _agent_op(suffix, method, summary, description, extra, ok, *errors) -> tuple:
    """An operation on `/api/v1/agents/{agent_id}<suffix>`: 404 for another tenant's id."""
    params = _AGENT_ID + extra.pop("parameters", [])
    return (
        f"/api/v1/agents/{{agent_id}}{suffix}",
        method,
        summary,
        description,
        {"parameters": params, **extra},
        {**ok, **_errors(404, *errors)},
    )


def _shortcut(name: str) -> tuple:
    return _agent_op(
        f"/{name}",
        "post",
        f"Queue a {name} command",
        f"The same as `POST /commands` with `command: {name}`; the body is optional and takes "
        "only `params.reason`.",
        _body(schemas.ShortcutSchema, required=False),
        _resp(202, "queued", _COMMAND),
        415,
        422,
    )


_OPERATIONS += [
    (
        "/api/v1/agent-types",
        "get",
        "Agent types, their config schema and capabilities",
        "Every agent type (built in or from a plugin): the JSON Schema of its `config` and its "
        "capabilities, each with the JSON Schema of its `execute` input.",
        {},
        {**_resp(200, "{items}", _ref("AgentTypeList")), **_errors()},
    ),
    (
        "/api/v1/agents",
        "post",
        "Register an agent",
        "Creates an agent of a `type` (201, with `Location`): version 1, `stopped`. `config` is "
        "checked against the type's schema; names are unique per tenant (409).",
        _body(schemas.AgentCreateSchema),
        {**_resp(201, "created: version 1, stopped", _AGENT), **_errors(400, 409, 413, 415, 422)},
    ),
    (
        "/api/v1/agents",
        "get",
        "List agents, newest first",
        "The tenant's agents, filtered by `status` and `type`, newest first, with the same "
        "keyset pagination as jobs (`cursor` from `next_cursor`).",
        _query(schemas.AgentListQuerySchema),
        {**_resp(200, "{items, next_cursor}", _ref("AgentPage")), **_errors(422)},
    ),
    _agent_op(
        "",
        "get",
        "Get an agent",
        "One agent: its current version, status, last heartbeat and capabilities.",
        {},
        _resp(200, "the agent", _AGENT),
    ),
    _agent_op(
        "",
        "patch",
        "Change an agent: a new version",
        "Changes `name`, `description` or `config` (at least one): the agent gets a new "
        "`version`, and the old one is kept (see `/versions`).",
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
        "Soft delete (204): the agent answers 404 from then on, its queued commands fail and a "
        "live one gets a last `stop`; its events and audit entries stay.",
        {},
        {"204": {"description": "deleted"}},
    ),
    _agent_op(
        "/versions",
        "get",
        "Every version, oldest first",
        "Each version's name, description and config, why it was made (`create`, `patch`, "
        "`revert`) and by which key.",
        {},
        _resp(200, "{items}", _ref("AgentVersionList")),
    ),
    _agent_op(
        "/revert",
        "post",
        "A new version equal to an old one's config",
        "Makes a new version whose name, description and config equal those of `version`; "
        "history is never rewritten.",
        _body(schemas.AgentRevertSchema),
        _resp(200, "the new version", _AGENT),
        415,
        422,
    ),
    _agent_op(
        "/commands",
        "post",
        "Queue a command (execute input checked first)",
        "Queues `start`, `stop`, `restart`, `status` or `execute` in the agent's mailbox (202, "
        "with `Location`); commands run one at a time in order. An `execute` input is checked "
        "against its capability's JSON Schema before anything is queued, and needs a running "
        "agent or a start ahead of it (409 otherwise).",
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
        "The agent's last `limit` commands with their status, result or error.",
        _query(schemas.LimitQuerySchema),
        _resp(200, "{items}", _ref("AgentCommandList")),
        422,
    ),
    _agent_op(
        "/commands/{command_id}",
        "get",
        "One command",
        "A command's status (`queued`, `processing`, `completed`, `failed`) and its result or "
        "error; poll it, or follow the agent's events.",
        {"parameters": [_path_id("command_id")]},
        _resp(200, "the command", _COMMAND),
    ),
    *[_shortcut(name) for name in ("start", "stop", "restart")],
    _agent_op(
        "/status",
        "get",
        "Status and heartbeat",
        "The lifecycle status, the last heartbeat the workers recorded, the current version "
        "and how many commands wait in the mailbox.",
        {},
        _resp(200, "the status", _ref("AgentStatus")),
    ),
    _agent_op(
        "/metrics",
        "get",
        "Counts and durations of commands and executions",
        "Per command and per capability: counts by outcome and run durations in seconds (an "
        "execution backed by a job runs until that job ended).",
        {},
        _resp(200, "the metrics", _ref("AgentMetrics")),
    ),
    _agent_op(
        "/logs",
        "get",
        "Log lines, newest last",
        "The last `limit` lines the agent's hooks and capabilities logged, each with the "
        "command that wrote it.",
        _query(schemas.LimitQuerySchema),
        _resp(200, "{items}", _ref("LogList")),
        422,
    ),
    _agent_op(
        "/events",
        "get",
        "The agent's events after `since`",
        "The agent's stored events with `seq > since`, in `seq` order (status changes, "
        "commands, executions): the same envelopes the relay sends. Paged as a job's events "
        "are (`limit`, `next_since`, `has_more`). A job's result or error in an execution's "
        "events is shown only to a key with `jobs:read`.",
        _query(schemas.SinceQuerySchema),
        _resp(200, "events in seq order", _ref("EventList")),
        422,
    ),
    (
        "/api/v1/audit",
        "get",
        "Who did what to the tenant's agents, newest first",
        "The audit trail: which key created, changed, commanded or deleted which agent. "
        "Filter by `agent_id`; pass `next_before` as `before` for the next page.",
        _query(schemas.AuditQuerySchema),
        {**_resp(200, "{items, next_before}", _ref("AuditPage")), **_errors(422)},
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


def _add_examples(examples: dict, path: str, method: str, op: dict) -> None:
    """Attach the named examples of api/openapi_examples/ to an operation: its body, its
    parameters (by name) and each response that has content (its own, and the shared ones)."""
    own = examples.get((method, path), {})
    if "request" in own:
        op["requestBody"]["content"]["application/json"]["examples"] = own["request"]
    for param in op.get("parameters", []):
        if param["name"] in own.get("parameters", {}):
            param["examples"] = own["parameters"][param["name"]]
    shared = openapi_examples.shared_errors(path, method)
    for status, response in op["responses"].items():
        named = {**shared.get(status, {}), **own.get("responses", {}).get(status, {})}
        if named and "content" in response:
            next(iter(response["content"].values()))["examples"] = named


# The docs page groups the operations under these tags, in this order.
_TAGS = [
    ("Jobs", "Generation jobs: submit, follow, cancel, retry, their events and artifacts."),
    ("Agents", "Agents: register, version, command, and watch them; the audit trail."),
    ("Operations", "Health, metrics and this document: no key needed."),
]


def _tag(path: str) -> str:
    if path.startswith(("/api/v1/agent", "/api/v1/audit")):
        return "Agents"
    if path.startswith(("/api/v1/jobs", "/api/v1/generators", "/api/v1/event-types")):
        return "Jobs"
    return "Operations"


# The schemas of api/schemas.py the document names (`<name>Schema` there).
_COMPONENTS = (
    "JobSubmit Job JobPage JobListQuery SinceQuery Event EventList EventTypeList GeneratorList "
    "ErrorEnvelope "
    "Agent AgentPage AgentCommand AgentCommandList AgentVersionList AgentStatus AgentMetrics "
    "AgentTypeList LogList AuditPage Liveness Readiness"
).split()


def build_spec() -> dict:
    """The OpenAPI 3 document of every route, with its examples."""
    spec = APISpec(
        title="Orchestra",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Generation jobs and agent commands on Celery; see docs/api.md."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, description in _TAGS:
        spec.tag({"name": name, "description": description})
    for name in _COMPONENTS:
        spec.components.schema(name, schema=getattr(schemas, f"{name}Schema"))
    paths: dict[str, dict] = {}
    for path, method, summary, description, extra, responses in _OPERATIONS:
        op = {
            "summary": summary,
            "description": description,
            "tags": [_tag(path)],
            "responses": dict(responses),
            "security": [{"bearer": []}],
            **extra,
        }
        _common_errors(method, op)
        paths.setdefault(path, {})[method] = op
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    doc = spec.to_dict()
    # A limit that is a setting (MAX_TIMEOUT_S) is written in as this deployment has it.
    submit = doc["components"]["schemas"]["JobSubmit"]["properties"]
    submit["timeout_s"]["maximum"] = config.current().max_timeout_s
    # After apispec has expanded the query schemas into one parameter per field.
    examples = openapi_examples.examples()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            _add_examples(examples, path, method, op)
    return doc


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

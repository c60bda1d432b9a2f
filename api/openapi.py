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
        {"parameters": _ID},
        {**_resp(202, "cancelled or cancelling", _JOB), **_errors(404, 409)},
    ),
    (
        "/api/v1/jobs/{job_id}/retry",
        "post",
        "Retry a failed or cancelled job",
        {"parameters": _ID},
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
    ("/api/v1/event-types", "get", "Event types and the JSON Schema of their payloads", {},
     {**_resp(200, "{items: [{event_type, schema}]}"), **_errors()}),
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
    ]:
        spec.components.schema(name, schema=schema)
    paths: dict[str, dict] = {}
    for path, method, summary, extra, responses in _OPERATIONS:
        op = {"summary": summary, "responses": responses, "security": [{"bearer": []}], **extra}
        paths.setdefault(path, {})[method] = op
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Orchestra API</title></head>
<body><redoc spec-url="/api/v1/openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>"""


@bp.get("/api/v1/openapi.json")
def openapi_json():
    """The OpenAPI document (public: it holds no tenant data)."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs():
    """A page that renders the OpenAPI document (ReDoc)."""
    return Response(_DOCS_HTML, content_type="text/html")

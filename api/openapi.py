"""The OpenAPI document and the docs page that renders it.

Each operation is declared on its route (`api/contract.py`); flask-smorest's `Api` gathers them.
Here, what no one route holds: the document's head (title, tags, the bearer scheme), the limit
that is a setting, and each blueprint's named examples (`api/*_examples.py`), attached by
operation, parameter name and status."""

from __future__ import annotations

import copy

from flask import Blueprint as FlaskBlueprint
from flask import Flask, Response, current_app, jsonify

from api import contract, examples, operations_examples
from app import config

bp = contract.Blueprint(
    "docs", __name__, tag="Operations", area=None, examples=operations_examples.operations
)
page = FlaskBlueprint("docs_page", __name__)  # a page for people, not an operation of the API

# The docs page groups the operations under these tags, in this order.
_TAGS = [
    ("Jobs", "Generation jobs: submit, follow, cancel, retry, their events and artifacts."),
    ("Agents", "Agents: register, version, command, and watch them; the audit trail."),
    ("Operations", "Health, metrics and this document: no key needed."),
]


def install(app: Flask, *blueprints: contract.Blueprint) -> contract.Api:
    """Register `blueprints` (each with its url prefix) and this one with flask-smorest."""
    app.config.update(API_TITLE="Orchestra", API_VERSION="1.0.0", OPENAPI_VERSION="3.0.3")
    api = contract.Api(
        app,
        spec_kwargs={
            "info": {
                "description": "Generation jobs and agent commands on Celery; see docs/api.md."
            }
        },
    )
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, description in _TAGS:
        api.spec.tag({"name": name, "description": description})
    for blp, prefix in blueprints:
        api.register_blueprint(blp, url_prefix=prefix)
    api.register_blueprint(bp)
    app.register_blueprint(page)
    app.extensions["orchestra.api"] = api
    return api


def build_spec() -> dict:
    """The OpenAPI 3 document of every route, with its examples."""
    api = current_app.extensions["orchestra.api"]
    doc = copy.deepcopy(api.spec.to_dict())
    # A limit that is a setting (MAX_TIMEOUT_S) is written in as this deployment has it.
    submit = doc["components"]["schemas"]["JobSubmit"]["properties"]
    submit["timeout_s"]["maximum"] = config.current().max_timeout_s
    named: dict = {}
    for blp in current_app.blueprints.values():
        if isinstance(blp, contract.Blueprint):
            named.update(blp.examples())
    for path, ops in doc["paths"].items():
        # The path's own parameters (its ids) are written into each operation, first, as a
        # client reads them per operation.
        on_path = ops.pop("parameters", [])
        for method, op in ops.items():
            if on_path:
                op["parameters"] = on_path + op.get("parameters", [])
            _add_examples(named.get((method, path), {}), path, method, op)
    return doc


def _add_examples(own: dict, path: str, method: str, op: dict) -> None:
    """Attach an operation's named examples: its body, its parameters (by name) and each
    response that has content (its own, and the shared refusals')."""
    if "request" in own:
        op["requestBody"]["content"]["application/json"]["examples"] = own["request"]
    for param in op.get("parameters", []):
        if param["name"] in own.get("parameters", {}):
            param["examples"] = own["parameters"][param["name"]]
    shared = examples.shared_errors(path, method)
    for status, response in op["responses"].items():
        found = {**shared.get(status, {}), **own.get("responses", {}).get(status, {})}
        if found and "content" in response:
            next(iter(response["content"].values()))["examples"] = found


_DOCUMENT = {"description": "the document", "content": {"application/json": {"schema": {
    "type": "object"}}}}


@bp.get("/api/v1/openapi.json")
@bp.doc(responses={"200": _DOCUMENT})
def openapi_json():
    """This OpenAPI document

    The OpenAPI 3 document of every route, rendered at `/docs`. No key needed.
    """
    return jsonify(build_spec())


_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Orchestra API</title>
<meta http-equiv="Content-Security-Policy" content="img-src 'self' data: blob:">
</head>
<body><redoc spec-url="/api/v1/openapi.json"></redoc>
<script src="/console/vendor/redoc.standalone.js"></script>
</body></html>"""


@page.get("/docs")
def docs():
    """A page that renders the OpenAPI document (ReDoc)."""
    return Response(_DOCS_HTML, content_type="text/html")

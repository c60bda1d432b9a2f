"""The OpenAPI document covers every route the API serves, each with words and examples, and
the docs page that renders it is served."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

# The API's routes: the document must list exactly these (the console's pages, if any, and
# /docs itself are pages for people, not API).
_API = re.compile(r"^/api/v1/|^/health/|^/metrics$")


def _served(flask_app) -> set[tuple[str, str]]:
    served = set()
    for rule in flask_app.url_map.iter_rules():
        if not _API.match(rule.rule):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    return served


def test_every_route_is_documented_and_the_document_is_valid(flask_app):
    spec = flask_app.test_client().get("/api/v1/openapi.json").json
    validate(spec)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    served = _served(flask_app)
    assert len(served) > 25 and ("/api/v1/openapi.json", "get") in served
    assert served - documented == set()
    assert documented - served == set()


def _has_example(op: dict) -> bool:
    places = [*op.get("parameters", [])]
    places += op.get("requestBody", {}).get("content", {}).values()
    for response in op["responses"].values():
        places += response.get("content", {}).values()
    return any(place.get("examples") for place in places)


def test_every_operation_has_a_summary_a_description_and_examples(flask_app):
    spec = flask_app.test_client().get("/api/v1/openapi.json").json
    missing = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            lacks = [k for k, n in (("summary", 5), ("description", 30)) if len(op.get(k, "")) < n]
            lacks += [] if _has_example(op) else ["examples"]
            lacks += [] if len(op.get("tags", [])) == 1 else ["one tag"]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body and not body.get("examples"):
                lacks.append("request example")
            # Every answer with a JSON body shows one: successes and refusals alike.
            for status, response in op["responses"].items():
                json_body = response.get("content", {}).get("application/json")
                if json_body is not None and not json_body.get("examples"):
                    lacks.append(f"{status} example")
            if lacks:
                missing[f"{method} {path}"] = lacks
    assert missing == {}


def test_the_docs_page_is_served_and_renders_the_document(flask_app):
    resp = flask_app.test_client().get("/docs")
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    # ReDoc's element, pointed at the document, and the script that renders it (wherever the
    # page loads it from).
    assert re.search(r'<redoc spec-url="/api/v1/openapi.json"', page)
    assert re.search(r'<script src="[^"]*redoc[^"]*\.js"', page)


def _properties(doc: dict, name: str) -> set[str]:
    return set(doc["components"]["schemas"][name]["properties"])


def test_each_answer_is_dumped_through_the_schema_the_document_shows(flask_app, http, tenant):
    """The services hand the routes whole rows (a job's `dispatch_token`, an agent's
    `tenant_id`); what a client gets is what the route's schema in the document names."""
    from app import jobs
    from app.agents import definitions

    client, auth = http
    doc = client.get("/api/v1/openapi.json").json
    job_id = client.post("/api/v1/jobs", json={"kind": "echo"}, headers=auth).json["id"]
    assert jobs.get(tenant[1], job_id).dispatch_token  # the service's row has it
    answers = [client.get(f"/api/v1/jobs/{job_id}", headers=auth).json]
    answers += client.get("/api/v1/jobs", headers=auth).json["items"][:1]
    assert [set(a) for a in answers] == [_properties(doc, "JobDetail"), _properties(doc, "Job")]
    agent = client.post("/api/v1/agents", json={"name": "dumped", "type": "echo"}, headers=auth)
    assert definitions.get(tenant[1], agent.json["id"]).tenant_id
    assert set(agent.json) == _properties(doc, "Agent")
    started = client.post(f"/api/v1/agents/{agent.json['id']}/start", headers=auth).json
    assert set(started) == _properties(doc, "AgentCommand")


def test_a_route_refuses_the_body_its_document_refuses(http):
    """/cancel and /retry take nothing: a field there is named and refused, nothing changes."""
    client, auth = http
    job_id = client.post("/api/v1/jobs", json={"kind": "echo"}, headers=auth).json["id"]
    for action in ("cancel", "retry"):
        resp = client.post(f"/api/v1/jobs/{job_id}/{action}", json={"force": True}, headers=auth)
        assert resp.status_code == 422, resp.json
        assert resp.json["error"]["details"] == {"force": ["Unknown field."]}
    assert client.get(f"/api/v1/jobs/{job_id}", headers=auth).json["status"] == "queued"

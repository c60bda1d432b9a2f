"""The OpenAPI document's examples are true: each one is valid against its own schema, the
request examples replayed against the real app get the documented status and answers shaped as
documented, and the error examples are what the API says, word for word."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from celery.contrib.testing.worker import start_worker
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator, OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

from tests.support.stack import wait_until

DOC_URI = "urn:orchestra:openapi"


@pytest.fixture(scope="module")
def doc(flask_app):
    return flask_app.test_client().get("/api/v1/openapi.json").json


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to a place in the document, as a URI fragment."""
    return "".join("/" + quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


def validator(doc: dict, *parts: str, writing: bool):
    """A validator of the schema at `parts` in the document, with its `$ref`s resolved in the
    document itself, under the document's own OpenAPI version (3.0: a Draft 4 dialect with
    `nullable`, read/write-only; 3.1: JSON Schema 2020-12)."""
    if doc["openapi"].startswith("3.0"):
        spec, cls = DRAFT4, (OAS30WriteValidator if writing else OAS30ReadValidator)
    else:
        spec, cls = DRAFT202012, OAS31Validator
    registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=spec)
    )
    return cls(
        {"$ref": DOC_URI + "#" + _pointer(*parts)},
        registry=registry,
        format_checker=FormatChecker(),
    )


def operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def every_example(doc: dict):
    """`(where, schema location, writing, example value)` for every example in the document."""
    for path, method, op in operations(doc):
        at = ("paths", path, method)
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            for name, ex in content.get("examples", {}).items():
                where = f"{method} {path} body {name}"
                yield where, (*at, "requestBody", "content", media, "schema"), True, ex["value"]
        for i, param in enumerate(op.get("parameters", [])):
            for name, ex in param.get("examples", {}).items():
                where = f"{method} {path} {param['name']} {name}"
                yield where, (*at, "parameters", str(i), "schema"), True, ex["value"]
        for status, resp in op["responses"].items():
            for media, content in resp.get("content", {}).items():
                for name, ex in content.get("examples", {}).items():
                    where = f"{method} {path} {status} {name}"
                    loc = (*at, "responses", status, "content", media, "schema")
                    yield where, loc, False, ex["value"]


def test_every_example_is_valid_against_its_own_schema(doc):
    examples = list(every_example(doc))
    assert len(examples) > 100
    faults = {}
    for where, location, writing, value in examples:
        errors = list(validator(doc, *location, writing=writing).iter_errors(value))
        if errors:
            faults[where] = [e.message for e in errors]
    assert faults == {}


def test_a_wrong_example_is_caught(doc):
    """The check above can fail: a job without its status, a count as a string."""
    loc = ("paths", "/api/v1/jobs/{job_id}", "get", "responses", "200", "content")
    job = doc["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]
    good = job["application/json"]["examples"]["completed"]["value"]
    schema_at = (*loc, "application/json", "schema")
    assert validator(doc, *schema_at, writing=False).is_valid(good)
    bad = {k: v for k, v in good.items() if k != "status"}
    assert not validator(doc, *schema_at, writing=False).is_valid(bad)
    assert not validator(doc, *schema_at, writing=False).is_valid({**good, "attempts": "1"})


# --- replaying the requests -----------------------------------------------------------------


def _examples(where: dict) -> dict:
    return {name: ex["value"] for name, ex in where.get("examples", {}).items()}


class Replay:
    """Sends the document's request examples to the in-process app and holds each answer to
    the document: a documented status, a body valid against its schema, and the same fields
    as the documented example of that status."""

    def __init__(self, client, auth, doc):
        self.client, self.auth, self.doc = client, auth, doc
        self.replayed: set[tuple[str, str]] = set()

    def op(self, method: str, path: str) -> dict:
        return self.doc["paths"][path][method]

    def bodies(self, method: str, path: str) -> dict:
        content = self.op(method, path).get("requestBody", {}).get("content", {})
        return _examples(content.get("application/json", {}))

    def queries(self, method: str, path: str) -> dict[str, dict]:
        """Each example name of the query parameters, as one query string's values."""
        out: dict[str, dict] = {}
        for param in self.op(method, path).get("parameters", []):
            if param["in"] == "query":
                for name, value in _examples(param).items():
                    out.setdefault(name, {})[param["name"]] = value
        return out

    def call(self, method, path, ids=None, expect=None, **kwargs):
        resp = self.client.open(path.format(**(ids or {})), method=method.upper(), **kwargs)
        op = self.op(method, path)
        status = str(resp.status_code)
        assert status in op["responses"], (method, path, status, resp.get_data(as_text=True))
        if expect is not None:
            assert resp.status_code == expect, (method, path, resp.get_data(as_text=True))
        content = op["responses"][status].get("content", {})
        if resp.is_json and "application/json" in content:
            at = ("paths", path, method, "responses", status, "content", "application/json")
            body = resp.json
            errors = [
                e.message
                for e in validator(self.doc, *at, "schema", writing=False).iter_errors(body)
            ]
            assert errors == [], (method, path, errors)
            for name, documented in _examples(content["application/json"]).items():
                assert_same_shape(body, documented, f"{method} {path} {status} {name}")
        self.replayed.add((method, path))
        return resp

    def each(self, method, path, ids=None, expect=200) -> list:
        """Every request example of the operation (body, or named query), or one bare call."""
        auth = {"headers": self.auth} if self.op(method, path)["security"] else {}
        bodies, queries = self.bodies(method, path), self.queries(method, path)
        calls = [{"json": b} for b in bodies.values()] + [
            {"query_string": q} for q in queries.values()
        ]
        return [self.call(method, path, ids, expect, **auth, **kw) for kw in calls or [{}]]


def assert_same_shape(actual, documented, where: str) -> None:
    """The answer has the documented example's fields (and a list's items theirs)."""
    if not (isinstance(actual, dict) and isinstance(documented, dict)):
        return
    if documented.keys() == {"error"}:
        assert actual["error"].keys() == documented["error"].keys(), where
        return
    assert actual.keys() == documented.keys(), where
    items, doc_items = actual.get("items"), documented.get("items")
    if items and doc_items and isinstance(items[0], dict):
        assert items[0].keys() == doc_items[0].keys(), where


@pytest.fixture
def replay(http, doc):
    client, auth = http
    return Replay(client, auth, doc)


JOB = "/api/v1/jobs/{job_id}"
AGENT = "/api/v1/agents/{agent_id}"


def replay_jobs(replay: Replay) -> None:
    jobs = replay.each("post", "/api/v1/jobs", expect=202)
    assert len(jobs) >= 2
    key = replay.op("post", "/api/v1/jobs")["parameters"][0]["examples"]["key"]["value"]
    body = next(iter(replay.bodies("post", "/api/v1/jobs").values()))
    with_key = {"json": body, "headers": {**replay.auth, "Idempotency-Key": key}}
    first = replay.call("post", "/api/v1/jobs", expect=202, **with_key)
    assert (
        replay.call("post", "/api/v1/jobs", expect=200, **with_key).json["id"] == first.json["id"]
    )
    # The batch's second item has that key: its job is the one just made.
    batch = replay.each("post", "/api/v1/jobs/batch", expect=202)[0].json
    assert batch["replayed"] == [1] and batch["items"][1]["id"] == first.json["id"]
    ids = {"job_id": first.json["id"]}
    assert len(replay.each("get", "/api/v1/jobs")) >= 3
    replay.each("get", JOB, ids)
    replay.each("get", JOB + "/events", ids)
    replay.each("get", JOB + "/output", ids)
    assert replay.each("post", JOB + "/cancel", ids, expect=202)[0].json["status"] == "cancelled"
    assert replay.each("post", JOB + "/retry", ids, expect=202)[0].json["status"] == "queued"
    kinds = replay.each("get", "/api/v1/generators")[0].json["items"]
    documented = replay.op("get", "/api/v1/generators")["responses"]["200"]["content"]
    for item in _examples(documented["application/json"])["kinds"]["items"]:
        assert item in kinds
    served = replay.each("get", "/api/v1/event-types")[0].json["items"]
    catalogue = replay.op("get", "/api/v1/event-types")["responses"]["200"]["content"]
    for item in _examples(catalogue["application/json"])["catalogue"]["items"]:
        assert item in served


def replay_agents(replay: Replay) -> None:
    served = replay.each("get", "/api/v1/agent-types")[0].json["items"]
    types = replay.op("get", "/api/v1/agent-types")["responses"]["200"]["content"]
    for item in _examples(types["application/json"])["types"]["items"]:
        assert item in served
    agent = replay.each("post", "/api/v1/agents", expect=201)[0].json
    ids = {"agent_id": agent["id"]}
    replay.each("get", "/api/v1/agents")
    replay.each("get", AGENT, ids)
    replay.each("patch", AGENT, ids)
    assert [
        v["version"] for v in replay.each("get", AGENT + "/versions", ids)[0].json["items"]
    ] == [1, 2]
    assert replay.each("post", AGENT + "/revert", ids)[0].json["version"] == 3
    commands = replay.each("post", AGENT + "/commands", ids, expect=202)
    assert [c.json["command"] for c in commands] == ["start", "execute", "stop"]
    replay.each("get", AGENT + "/commands", ids)
    replay.each(
        "get", AGENT + "/commands/{command_id}", {**ids, "command_id": commands[1].json["id"]}
    )
    for name in ("start", "stop", "restart"):
        assert len(replay.each("post", f"{AGENT}/{name}", ids, expect=202)) == 2
    for suffix in ("/status", "/metrics", "/logs", "/events"):
        replay.each("get", AGENT + suffix, ids)
    assert len(replay.each("get", "/api/v1/audit")) == 2
    replay.each("delete", AGENT, ids, expect=204)
    replay.call("get", AGENT, ids, expect=404, headers=replay.auth)


KEY = "/api/v1/concurrency-keys/{key}"


def replay_scheduling(replay: Replay) -> None:
    """The scheduling routes, the changes with an admin key of the same tenant."""
    from app import tenants

    tenant = tenants.authenticate(replay.auth["Authorization"].split()[1]).name
    secret = tenants.create_key(tenant, ["admin"])
    admin = Replay(replay.client, {"Authorization": f"Bearer {secret}"}, replay.doc)
    admin.replayed = replay.replayed
    assert admin.each("post", "/api/v1/pauses")[0].json["paused"] is True
    assert replay.each("get", "/api/v1/pauses")[0].json["items"][0]["kind"] == "http"
    assert replay.each("get", "/api/v1/scheduling")[0].json["pauses"]
    assert admin.each("post", "/api/v1/pauses/resume")[0].json["changed"] is True
    ids = {"key": "user-42"}
    assert admin.each("put", KEY, ids)[0].json["max_running"] == 2
    assert replay.each("get", "/api/v1/concurrency-keys")[0].json["items"][0]["key"] == "user-42"
    assert replay.each("get", KEY, ids)[0].json["own"] is True
    assert admin.each("delete", KEY, ids)[0].json["own"] is False


PROVIDER = "/api/v1/providers/{name}"


def replay_providers(replay: Replay) -> None:
    """The chat provider routes, the changes with an admin key of the same tenant; the
    examples' vLLM server is on a private address, listed as the operator's own."""
    from app import config, tenants

    before = config.current()
    config.install(before.with_(http_private_hosts=f"{before.http_private_hosts},10.0.0.5:8000"))
    try:
        tenant = tenants.authenticate(replay.auth["Authorization"].split()[1]).name
        secret = tenants.create_key(tenant, ["admin"])
        admin = Replay(replay.client, {"Authorization": f"Bearer {secret}"}, replay.doc)
        admin.replayed = replay.replayed
        ids = {"name": "vllm"}
        assert [r.json["has_key"] for r in admin.each("put", PROVIDER, ids)] == [True, False]
        assert replay.each("get", "/api/v1/providers")[0].json["items"][0]["name"] == "vllm"
        assert replay.each("get", PROVIDER, ids)[0].json["base_url"] == "http://10.0.0.5:8000/v1"
        admin.each("delete", PROVIDER, ids, expect=204)
    finally:
        config.install(before)


def replay_operations(replay: Replay) -> None:
    for path in ("/health/liveness", "/health/readiness", "/metrics", "/api/v1/openapi.json"):
        replay.each("get", path)
    scrape = replay.call("get", "/metrics").get_data(as_text=True)
    documented = replay.op("get", "/metrics")["responses"]["200"]["content"]["text/plain"]
    for line in _examples(documented)["scrape"].splitlines():
        if line.startswith("#"):
            assert line in scrape  # the families the example shows exist


def test_the_job_examples_replay_with_their_documented_status(replay):
    replay_jobs(replay)


def test_the_agent_examples_replay_with_their_documented_status(replay):
    replay_agents(replay)


def test_the_scheduling_examples_replay_with_their_documented_status(replay):
    replay_scheduling(replay)


def test_the_provider_examples_replay_with_their_documented_status(replay):
    replay_providers(replay)


def test_the_operations_examples_replay_with_their_documented_status(replay):
    replay_operations(replay)


def test_every_operation_but_the_result_is_replayed(replay):
    """The replays above cover every operation; the result needs a worker (below)."""
    replay_jobs(replay)
    replay_agents(replay)
    replay_scheduling(replay)
    replay_providers(replay)
    replay_operations(replay)
    every = {(method, path) for path, method, _ in operations(replay.doc)}
    assert every - replay.replayed == {("get", JOB + "/result")}


# --- the error examples, word for word ------------------------------------------------------


def documented_error(doc, method, path, status, name) -> dict:
    content = doc["paths"][path][method]["responses"][str(status)]["content"]
    return content["application/json"]["examples"][name]["value"]


@pytest.fixture
def ids(http):
    """A queued job and a stopped agent of the tenant, and ids that name nothing."""
    client, auth = http
    job = client.post("/api/v1/jobs", json={"kind": "echo"}, headers=auth).json
    agent = client.post("/api/v1/agents", json={"name": "taken", "type": "echo"}, headers=auth).json
    return {"job_id": job["id"], "agent_id": agent["id"], "command_id": str(uuid.uuid4())}


NOWHERE = {"job_id": str(uuid.uuid4()), "agent_id": str(uuid.uuid4())}
_EXECUTE = {"command": "execute", "params": {"capability": "say", "input": {"text": "hi"}}}
_NO_INPUT = {"command": "execute", "params": {"capability": "say", "input": {}}}
_BIG = {"data": "x" * 300_000, "content_type": "application/json"}

_BATCH_REFUSED = {"jobs": [
    {"kind": "echo", "idempotency_key": "a"},
    {"kind": "sleep", "params": {"seconds": -1}},
    {"kind": "echo", "idempotency_key": "a"},
]}
_BATCH_TOO_MANY = {"jobs": [{"kind": "echo"}] * 1001}

# (method, path, request, status, example name, ids that override the fixture's)
ERROR_CASES = [
    ("post", "/api/v1/jobs/batch", {"json": _BATCH_REFUSED}, 422, "refused_items", {}),
    ("post", "/api/v1/jobs/batch", {"json": _BATCH_TOO_MANY}, 422, "too_many", {}),
    ("post", "/api/v1/jobs", {"json": {"kind": "echo", "priority": 12}}, 422, "bad_field", {}),
    ("post", "/api/v1/jobs", {"json": {"kind": "paint"}}, 422, "unknown_kind", {}),
    (
        "post",
        "/api/v1/jobs",
        {"json": {"kind": "sleep", "params": {"seconds": -1}}},
        422,
        "bad_params",
        {},
    ),
    ("post", "/api/v1/jobs", {"json": [1]}, 422, "not_an_object", {}),
    (
        "post",
        "/api/v1/jobs",
        {"data": "{not json", "content_type": "application/json"},
        400,
        "bad_json",
        {},
    ),
    (
        "post",
        "/api/v1/jobs",
        {"data": "kind=echo", "content_type": "text/plain"},
        415,
        "not_json",
        {},
    ),
    ("post", "/api/v1/jobs", _BIG, 413, "too_large", {}),
    ("get", "/api/v1/jobs", {"query_string": {"cursor": "abc"}}, 422, "bad_cursor", {}),
    ("get", "/api/v1/jobs", {"query_string": {"status": "done"}}, 422, "bad_status", {}),
    ("get", JOB, {}, 404, "no_such_job", NOWHERE),
    ("get", JOB + "/events", {"query_string": {"since": -1}}, 422, "bad_since", {}),
    ("get", JOB + "/events", {"query_string": {"limit": 1001}}, 422, "too_many", {}),
    ("get", JOB + "/output", {"query_string": {"offset": -1}}, 422, "bad_offset", {}),
    ("get", JOB + "/output", {}, 404, "no_such_job", NOWHERE),
    ("get", JOB + "/result", {}, 404, "no_artifact", {}),
    ("post", "/api/v1/agents", {"json": {"name": "taken", "type": "echo"}}, 409, "name_taken", {}),
    (
        "post",
        "/api/v1/agents",
        {"json": {"name": "x", "type": "echo", "config": {"healthy": "yes"}}},
        422,
        "bad_config",
        {},
    ),
    ("post", "/api/v1/agents", {"json": {"name": "x", "type": "painter"}}, 422, "unknown_type", {}),
    ("get", "/api/v1/agents", {"query_string": {"status": "asleep"}}, 422, "bad_status", {}),
    ("get", AGENT, {}, 404, "no_such_agent", NOWHERE),
    ("patch", AGENT, {"json": {}}, 422, "empty", {}),
    ("post", AGENT + "/commands", {"json": _EXECUTE}, 409, "not_running", {}),
    ("post", AGENT + "/commands", {"json": _NO_INPUT}, 422, "bad_input", {}),
    ("post", AGENT + "/start", {"json": {"params": {"force": True}}}, 422, "bad_params", {}),
    ("get", AGENT + "/commands/{command_id}", {}, 404, "no_such_command", {}),
    ("get", AGENT + "/commands", {"query_string": {"limit": 0}}, 422, "bad_limit", {}),
    ("get", AGENT + "/logs", {"query_string": {"limit": 1001}}, 422, "bad_limit", {}),
    ("get", AGENT + "/events", {"query_string": {"limit": 1001}}, 422, "too_many", {}),
    ("get", "/api/v1/audit", {"query_string": {"agent_id": "nope"}}, 422, "bad_agent_id", {}),
    ("post", "/api/v1/pauses", {"json": {}}, 403, "not_admin", {}),
    ("put", KEY, {"json": {"max_running": -1}}, 422, "bad_limit", {"key": "user-42"}),
    ("get", "/api/v1/concurrency-keys", {"query_string": {"limit": 0}}, 422, "bad_limit", {}),
    ("get", KEY, {}, 422, "bad_key", {"key": "a b"}),
    ("put", PROVIDER, {"json": {"base_url": "http://10.0.0.5:8000/v1"}}, 403, "not_admin",
     {"name": "vllm"}),
    ("put", PROVIDER, {"json": {"base_url": "ftp://10.0.0.5/v1"}}, 422, "not_a_url",
     {"name": "vllm"}),
    ("get", PROVIDER, {}, 404, "no_such_provider", {"name": "gone"}),
    ("get", PROVIDER, {}, 422, "bad_name", {"name": "Bad%20Name"}),
]


@pytest.mark.parametrize("method, path, request_, status, name, override", ERROR_CASES)
def test_the_error_examples_are_what_the_api_says(
    http, doc, ids, method, path, request_, status, name, override
):
    client, auth = http
    url = path.format(**{**ids, **override})
    resp = client.open(url, method=method.upper(), headers=auth, **request_)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.json == documented_error(doc, method, path, status, name)


def test_the_auth_examples_are_what_the_api_says(http, doc, domain):
    from app import tenants

    client, _ = http
    path = "/api/v1/jobs"
    assert client.get(path).json == documented_error(doc, "get", path, 401, "missing_key")
    nobody = {"Authorization": "Bearer orc_nobody"}
    assert client.get(path, headers=nobody).json == documented_error(
        doc, "get", path, 401, "unknown_key"
    )
    reader = {
        "Authorization": f"Bearer {tenants.create_key(f'r-{uuid.uuid4().hex[:8]}', ['jobs:read'])}"
    }
    resp = client.post(path, json={"kind": "echo"}, headers=reader)
    assert resp.json == documented_error(doc, "post", path, 403, "missing_scope")


# --- the result, with a worker --------------------------------------------------------------


@pytest.fixture
def worker(domain):
    """An embedded Celery worker on the jobs queue (Celery's own test harness)."""
    from workers import make_celery

    app = make_celery(domain)
    app.control.purge()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=("jobs",), shutdown_timeout=30
    ):
        yield app


def test_the_result_example_is_what_an_echo_job_writes(replay, worker):
    echo = replay.bodies("post", "/api/v1/jobs")["echo"]
    job = replay.call("post", "/api/v1/jobs", expect=202, json=echo, headers=replay.auth).json
    ids = {"job_id": job["id"]}
    wait_until(
        lambda: replay.call("get", JOB, ids, headers=replay.auth).json["status"] == "completed",
        30,
        0.05,
        "the echo job to complete",
    )
    resp = replay.each("get", JOB + "/result", ids)[0]
    documented = replay.op("get", JOB + "/result")["responses"]["200"]["content"][
        "application/json"
    ]
    assert resp.content_type == "application/json"
    assert resp.json == _examples(documented)["echo"]
    for action, name in (("cancel", "terminal"), ("retry", "not_ended")):
        refused = replay.call("post", f"{JOB}/{action}", ids, expect=409, headers=replay.auth)
        assert refused.json == documented_error(replay.doc, "post", f"{JOB}/{action}", 409, name)

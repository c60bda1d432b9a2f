"""Agent definitions over HTTP (in-process API, real Postgres): CRUD, versions, refusals."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Text, func, select

from app import db
from app.models import Agent, AgentCommand, AgentVersion, AuditEntry, Event

V1 = "/api/v1"


def agent_rows() -> tuple[int, int, int, int]:
    """Agents, versions, commands and events stored (to show a refusal wrote nothing)."""
    with db.transaction() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Agent, AgentVersion, AgentCommand, Event)
        )


def create(http, name=None, type_="echo", **fields):
    client, auth = http
    body = {"name": name or f"a-{uuid.uuid4().hex[:8]}", "type": type_, **fields}
    return client.post(f"{V1}/agents", json=body, headers=auth)


def test_create_get_list_an_agent(http):
    client, auth = http
    resp = create(http, "scribe", description="writes", config={"healthy": True})
    assert resp.status_code == 201, resp.json
    agent = resp.json
    assert agent["version"] == 1 and agent["status"] == "stopped"
    assert agent["name"] == "scribe" and agent["config"] == {"healthy": True}
    assert agent["last_heartbeat"] is None
    assert [c["name"] for c in agent["capabilities"]] == ["say"]
    assert agent["capabilities"][0]["input_schema"]["required"] == ["text"]
    assert resp.headers["Location"].endswith(f"/agents/{agent['id']}")
    assert client.get(f"{V1}/agents/{agent['id']}", headers=auth).json == agent
    listed = client.get(f"{V1}/agents?type=echo", headers=auth).json
    assert agent["id"] in [a["id"] for a in listed["items"]]


def test_list_pages_with_a_cursor(http):
    client, auth = http
    ids = [create(http).json["id"] for _ in range(3)]
    page1 = client.get(f"{V1}/agents?limit=2", headers=auth).json
    page2 = client.get(f"{V1}/agents?limit=2&cursor={page1['next_cursor']}", headers=auth).json
    seen = [a["id"] for a in page1["items"] + page2["items"]]
    assert seen[:3] == ids[::-1] and len(set(seen)) == len(seen)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x", "type": "nope"}, "type"),
        ({"name": "x", "type": "echo", "config": {"colour": "red"}}, "config"),
        ({"name": "x", "type": "echo", "config": {"healthy": "yes"}}, "config.healthy"),
        ({"name": "", "type": "echo"}, "name"),
        ({"type": "echo"}, "name"),
        ({"name": "x", "type": "echo", "extra": 1}, "extra"),
        (
            {"name": "x", "type": "generator", "config": {"allowed_kinds": "echo"}},
            "config.allowed_kinds",
        ),
    ],
)
def test_bad_agents_are_refused_and_nothing_is_created(http, body, field):
    client, auth = http
    before = agent_rows()
    resp = client.post(f"{V1}/agents", json=body, headers=auth)
    assert resp.status_code == 422, resp.json
    assert resp.json["error"]["code"] == "VALIDATION_ERROR"
    assert field in resp.json["error"]["details"], resp.json
    assert agent_rows() == before


def test_a_name_is_unique_per_tenant_until_deleted(http):
    client, auth = http
    first = create(http, "twin").json
    again = create(http, "twin")
    assert again.status_code == 409 and again.json["error"]["details"] == {
        "name": ["already in use"]
    }
    assert client.delete(f"{V1}/agents/{first['id']}", headers=auth).status_code == 204
    assert create(http, "twin").status_code == 201


def test_patch_makes_versions_and_revert_restores_a_config(http):
    client, auth = http
    agent = create(http, config={"healthy": True}).json
    url = f"{V1}/agents/{agent['id']}"
    v2 = client.patch(url, json={"config": {"healthy": False}}, headers=auth).json
    assert v2["version"] == 2 and v2["config"] == {"healthy": False}
    v3 = client.patch(url, json={"description": "now documented"}, headers=auth).json
    assert v3["version"] == 3 and v3["config"] == {"healthy": False}
    versions = client.get(f"{url}/versions", headers=auth).json["items"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["reason"] for v in versions] == ["create", "patch", "patch"]
    assert versions[0]["config"] == {"healthy": True}
    v4 = client.post(f"{url}/revert", json={"version": 1}, headers=auth).json
    assert v4["version"] == 4 and v4["config"] == versions[0]["config"]
    assert v4["description"] == ""
    events = client.get(f"{url}/events", headers=auth).json["items"]
    assert [e["event_type"] for e in events] == (
        ["agent.create.completed"] + ["agent.update.completed"] * 3
    )
    assert events[-1]["payload"] == {
        "agent_id": agent["id"],
        "version": 4,
        "reason": "revert",
        "reverted_to": 1,
    }
    assert [e["seq"] for e in events] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "method, suffix, body, field",
    [
        ("patch", "", {"config": {"healthy": 3}}, "config.healthy"),
        ("patch", "", {}, "_schema"),
        ("patch", "", {"type": "generator"}, "type"),
        ("post", "/revert", {"version": 9}, "version"),
        ("post", "/revert", {"version": "1"}, "version"),
    ],
)
def test_bad_patches_and_reverts_change_nothing(http, method, suffix, body, field):
    client, auth = http
    agent = create(http).json
    before = agent_rows()
    resp = getattr(client, method)(f"{V1}/agents/{agent['id']}{suffix}", json=body, headers=auth)
    assert resp.status_code == 422, resp.json
    assert field in resp.json["error"]["details"]
    assert agent_rows() == before
    assert client.get(f"{V1}/agents/{agent['id']}", headers=auth).json["version"] == 1


def test_a_stopped_agent_is_deleted_at_once(http):
    client, auth = http
    agent = create(http).json
    url = f"{V1}/agents/{agent['id']}"
    assert client.delete(url, headers=auth).status_code == 204
    for path in ("", "/versions", "/status", "/logs", "/metrics", "/events"):
        assert client.get(url + path, headers=auth).status_code == 404
    assert client.delete(url, headers=auth).status_code == 404
    assert agent["id"] not in [
        a["id"] for a in client.get(f"{V1}/agents", headers=auth).json["items"]
    ]
    with db.transaction() as conn:  # soft: the row and its history stay
        assert (
            conn.execute(
                select(func.count())
                .select_from(AgentCommand)
                .where(AgentCommand.agent_id == uuid.UUID(agent["id"]))
            ).scalar_one()
            == 0
        )


def test_execute_input_is_checked_before_anything_is_queued(http):
    client, auth = http
    echo = create(http).json
    gen = create(http, type_="generator", config={"allowed_kinds": ["echo", "sleep"]}).json
    before = agent_rows()
    cases = [
        (echo, {"capability": "say", "input": {}}, "params.input"),
        (echo, {"capability": "say", "input": {"text": 3}}, "params.input.text"),
        (echo, {"capability": "shout", "input": {"text": "x"}}, "params.capability"),
        (echo, {"input": {"text": "x"}}, "params.capability"),
        (
            gen,
            {"capability": "generate", "input": {"kind": "fail", "params": {}}},
            "params.input.kind",
        ),
        (
            gen,
            {"capability": "generate", "input": {"kind": "sleep", "params": {"seconds": -1}}},
            "params.input.params.seconds",
        ),
    ]
    for agent, params, field in cases:
        resp = client.post(
            f"{V1}/agents/{agent['id']}/commands",
            json={"command": "execute", "params": params},
            headers=auth,
        )
        assert resp.status_code == 422, (params, resp.json)
        assert field in resp.json["error"]["details"], (params, resp.json)
    bad = client.post(f"{V1}/agents/{echo['id']}/commands", json={"command": "dance"}, headers=auth)
    assert bad.status_code == 422 and "command" in bad.json["error"]["details"]
    assert agent_rows() == before


def test_execute_on_an_agent_that_will_not_be_running_is_a_conflict(http):
    client, auth = http
    agent = create(http).json
    before = agent_rows()
    resp = client.post(
        f"{V1}/agents/{agent['id']}/commands",
        json={"command": "execute", "params": {"capability": "say", "input": {"text": "hi"}}},
        headers=auth,
    )
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "AGENT_NOT_RUNNING"
    assert "start it first" in resp.json["error"]["message"]
    assert agent_rows() == before


def test_agent_types_are_listed_with_schemas(http):
    client, auth = http
    items = {t["type"]: t for t in client.get(f"{V1}/agent-types", headers=auth).json["items"]}
    assert {"echo", "generator"} <= set(items)
    generate = items["generator"]["capabilities"][0]
    assert generate["name"] == "generate" and generate["input_schema"]["required"] == ["kind"]


def test_another_tenants_agent_is_not_found(http, other_tenant):
    client, _ = http
    agent = create(http).json
    theirs = {"Authorization": f"Bearer {other_tenant[0]}"}
    url = f"{V1}/agents/{agent['id']}"
    for method, path, body in [
        ("get", "", None),
        ("patch", "", {"description": "x"}),
        ("delete", "", None),
        ("get", "/versions", None),
        ("post", "/revert", {"version": 1}),
        ("post", "/start", None),
        ("post", "/commands", {"command": "status"}),
        ("get", "/status", None),
        ("get", "/metrics", None),
        ("get", "/logs", None),
        ("get", "/events", None),
        ("get", "/commands", None),
        ("get", f"/commands/{uuid.uuid4()}", None),
    ]:
        resp = getattr(client, method)(url + path, json=body, headers=theirs)
        assert resp.status_code == 404, (method, path, resp.status_code)
    assert client.get(f"{V1}/audit?agent_id={agent['id']}", headers=theirs).json["items"] == []


def test_every_operation_is_audited_with_the_key(http, tenant):
    client, auth = http
    agent = create(http).json
    url = f"{V1}/agents/{agent['id']}"
    client.patch(url, json={"description": "d"}, headers=auth)
    client.post(f"{url}/revert", json={"version": 1}, headers=auth)
    client.post(f"{url}/start", headers=auth)
    client.delete(url, headers=auth)
    trail = client.get(f"{V1}/audit?agent_id={agent['id']}", headers=auth).json["items"]
    assert [e["action"] for e in trail] == [
        "agent.delete",
        "agent.command.start",
        "agent.revert",
        "agent.update",
        "agent.create",
    ]
    assert {e["key"]["prefix"] for e in trail} == {tenant[0][:12]}
    assert {e["key"]["id"] for e in trail} == {str(tenant[1].key_id)}
    assert all(e["at"].endswith("Z") for e in trail)
    with db.transaction() as conn:
        secrets = conn.execute(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.details.cast(Text).contains(tenant[0]))
        ).scalar_one()
    assert secrets == 0


HOSTILE = [
    # (route: "" create, else a suffix on an existing agent; method; raw body; content type;
    #  status; code; a details key that must be named)
    ("", "post", "{bad", "application/json", 400, "BAD_JSON", "_schema"),
    ("", "post", '{"name": "x", "type": "echo"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE",
     None),
    ("", "post", '{"name": "a\\u0000b", "type": "echo"}', "application/json", 422,
     "VALIDATION_ERROR", "name"),
    ("", "post", '{"name": "a\\udfffb", "type": "echo"}', "application/json", 422,
     "VALIDATION_ERROR", "name"),
    ("", "post", '{"name": "x", "type": "echo", "config": {"healthy": 1e400}}',
     "application/json", 422, "VALIDATION_ERROR", "config.healthy"),
    ("", "post", '{"name": "x", "type": "echo", "config": ' + "[" * 80 + "]" * 80 + "}",
     "application/json", 422, "VALIDATION_ERROR", "config.0"),
    ("", "post", '{"name": "x", "type": "echo", "config": []}', "application/json", 422,
     "VALIDATION_ERROR", "config"),
    ("", "post", '{"name": "x", "type": "echo", "description": "' + "d" * 3000 + '"}',
     "application/json", 422, "VALIDATION_ERROR", "description"),
    ("", "post", '{"name": "x", "type": "echo", "config": {"healthy": NaN}}', "application/json",
     400, "BAD_JSON", "_schema"),
    ("", "patch", '{"name": 7}', "application/json", 422, "VALIDATION_ERROR", "name"),
    ("/revert", "post", '{"version": 1e400}', "application/json", 422, "VALIDATION_ERROR",
     "version"),
    ("/revert", "post", '{"version": 99999999999999999999}', "application/json", 422,
     "VALIDATION_ERROR", "version"),
    ("/commands", "post", '{"command": "start", "params": []}', "application/json", 422,
     "VALIDATION_ERROR", "params"),
    ("/commands", "post", '{"command": "execute", "params": {"capability": "say", "input": '
     '{"text": "' + "t" * 100_001 + '"}}}', "application/json", 422, "VALIDATION_ERROR",
     "params.input.text"),
    ("/commands", "post", '{"command": "execute", "params": {"capability": ["say"]}}',
     "application/json", 422, "VALIDATION_ERROR", "params.capability"),
    ("/start", "post", '{"params": 1}', "application/json", 422, "VALIDATION_ERROR", "params"),
    ("/start", "post", '{"surprise": 1}', "application/json", 422, "VALIDATION_ERROR",
     "surprise"),
    ("/stop", "post", '{"params": {"force": true}}', "application/json", 422, "VALIDATION_ERROR",
     "params.force"),
    ("/commands", "post", '{"command": "stop", "params": {"reason": 7}}', "application/json",
     422, "VALIDATION_ERROR", "params.reason"),
]


@pytest.mark.parametrize("suffix,method,raw,ctype,status,code,field", HOSTILE)
def test_hostile_agent_requests_are_4xx_field_by_field_and_write_nothing(
    http, suffix, method, raw, ctype, status, code, field
):
    client, auth = http
    url = f"{V1}/agents"
    if suffix or method != "post":
        url += "/" + create(http).json["id"] + suffix
    before = agent_rows()
    resp = getattr(client, method)(url, data=raw.encode(), content_type=ctype, headers=auth)
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    error = resp.json["error"]
    assert error["code"] == code
    if field:
        assert field in error["details"], error
    assert agent_rows() == before


def test_an_oversized_agent_body_is_413_and_writes_nothing(http, domain):
    client, auth = http
    before = agent_rows()
    raw = '{"name": "big", "type": "echo", "description": "' + "x" * domain.max_body_bytes + '"}'
    resp = client.post(f"{V1}/agents", data=raw, content_type="application/json", headers=auth)
    assert resp.status_code == 413 and resp.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert agent_rows() == before

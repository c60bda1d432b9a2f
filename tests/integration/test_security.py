"""Keys: scopes per route, revocation, hashes only, constant-time comparison by prefix."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app import db, tenants
from app.models import ApiKey
from tests.integration.conftest import row_counts

V1 = "/api/v1"


def key(scopes, tenant_name=None) -> dict:
    secret = tenants.create_key(tenant_name or f"s-{uuid.uuid4().hex[:10]}", scopes)
    return {"Authorization": f"Bearer {secret}"}


# (method, path, body, scope it needs)
ROUTES = [
    ("get", "/jobs", None, "jobs:read"),
    ("get", "/event-types", None, "jobs:read"),
    ("post", "/jobs", {"kind": "echo", "params": {}}, "jobs:write"),
    ("get", "/agents", None, "agents:read"),
    ("get", "/agent-types", None, "agents:read"),
    ("get", "/audit", None, "agents:read"),
    ("post", "/agents", {"name": "n", "type": "echo"}, "agents:write"),
]


@pytest.mark.parametrize("method,path,body,needed", ROUTES)
def test_each_route_needs_its_scope_and_a_refusal_writes_nothing(
    flask_app, method, path, body, needed
):
    client = flask_app.test_client()
    others = [s for s in tenants.DEFAULT_SCOPES if s != needed]
    before = row_counts()
    resp = getattr(client, method)(V1 + path, json=body, headers=key(others))
    assert resp.status_code == 403, resp.json
    assert resp.json["error"] == {
        "code": "FORBIDDEN",
        "message": f"this key lacks the {needed} scope",
        "details": {"scope": [f"requires {needed}"]},
    }
    assert row_counts() == before
    for scopes in ([needed], ["admin"]):
        ok = getattr(client, method)(V1 + path, json=body, headers=key(scopes))
        assert ok.status_code in (200, 201, 202), (scopes, ok.json)


def test_agent_commands_need_agents_write(flask_app):
    client = flask_app.test_client()
    name = f"s-{uuid.uuid4().hex[:10]}"
    writer, reader = key(["agents:write", "agents:read"], name), key(["agents:read"], name)
    agent = client.post(f"{V1}/agents", json={"name": "x", "type": "echo"}, headers=writer).json
    for path in ("/start", "/stop", "/restart", "/commands", "/revert"):
        resp = client.post(f"{V1}/agents/{agent['id']}{path}", json={}, headers=reader)
        assert resp.status_code == 403, path
    assert client.delete(f"{V1}/agents/{agent['id']}", headers=reader).status_code == 403
    assert client.get(f"{V1}/agents/{agent['id']}", headers=reader).status_code == 200


def test_a_revoked_key_is_refused_and_revoking_by_prefix_works(flask_app):
    client = flask_app.test_client()
    name = f"s-{uuid.uuid4().hex[:10]}"
    first, second = tenants.create_key(name), tenants.create_key(name)
    assert client.get(f"{V1}/jobs", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    assert tenants.revoke(first) == 1
    assert tenants.revoke(first) == 0  # already revoked
    resp = client.get(f"{V1}/jobs", headers={"Authorization": f"Bearer {first}"})
    assert resp.status_code == 401 and resp.json["error"]["code"] == "UNAUTHORIZED"
    assert tenants.authenticate(second) is not None  # the tenant's other key still works
    assert tenants.revoke(second[: tenants.PREFIX_LEN]) == 1
    assert tenants.authenticate(second) is None
    listed = tenants.list_keys(name)
    assert [k["prefix"] for k in listed] == [first[:12], second[:12]]
    assert all(k["revoked_at"] is not None for k in listed)
    with pytest.raises(tenants.ValidationFailed):
        tenants.revoke("short")


def test_only_hashes_are_stored_and_a_near_miss_is_refused(domain):
    secret = tenants.create_key(f"s-{uuid.uuid4().hex[:10]}", ["jobs:read"])
    with db.transaction() as conn:
        row = conn.execute(select(ApiKey).where(ApiKey.prefix == secret[:12])).one()
    assert row.key_hash == tenants.hash_secret(secret) and secret not in (row.key_hash, row.prefix)
    assert row.scopes == ["jobs:read"]
    assert tenants.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert tenants.authenticate(secret[:12]) is None
    ref = tenants.authenticate(secret)
    assert ref.scopes == {"jobs:read"} and ref.allows("jobs:read") and not ref.allows("jobs:write")


def test_bad_scopes_are_refused():
    for scopes in ([], ["jobs:delete"]):
        with pytest.raises(tenants.ValidationFailed) as exc:
            tenants.create_key("fine-name", scopes)
        assert "scopes" in exc.value.details


def test_cross_origin_access_only_for_configured_origins(flask_app, domain, tenant):
    from api import create_app

    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    default = flask_app.test_client().options(
        f"{V1}/jobs", headers={"Origin": "https://console.example", **preflight}
    )
    assert "Access-Control-Allow-Origin" not in default.headers  # same origin only by default
    app = create_app(domain.with_(api_cors_origins="https://console.example"))
    client = app.test_client()
    ok = client.options(f"{V1}/jobs", headers={"Origin": "https://console.example", **preflight})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://console.example"
    assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower()
    evil = client.options(f"{V1}/jobs", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in evil.headers
    real = client.get(
        f"{V1}/jobs",
        headers={"Origin": "https://console.example", "Authorization": f"Bearer {tenant[0]}"},
    )
    assert real.status_code == 200
    assert real.headers["Access-Control-Allow-Origin"] == "https://console.example"

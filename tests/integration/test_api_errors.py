"""Hostile and mistaken requests: each gets a 4xx with the envelope, and writes nothing."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.conftest import row_counts

JOBS = "/api/v1/jobs"


def assert_envelope(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer x"},
     {"Authorization": "Bearer " + "a" * 5000}],
)
def test_missing_malformed_or_unknown_key_is_401(flask_app, headers):
    resp = flask_app.test_client().get(JOBS, headers=headers)
    err = assert_envelope(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert err["message"]


BAD_BODIES = [
    # (raw body, content type, status, code, a details key that must be named)
    ("{bad", "application/json", 400, "BAD_JSON", "_schema"),
    ('{"kind": "echo", "params": {"x": NaN}}', "application/json", 400, "BAD_JSON", "_schema"),
    ("[" * 50000 + "]" * 50000, "application/json", 400, "BAD_JSON", "_schema"),
    ("\xff\xfe", "application/json", 400, "BAD_JSON", "_schema"),
    ("[1, 2]", "application/json", 422, "VALIDATION_ERROR", "_schema"),
    ('"just a string"', "application/json", 422, "VALIDATION_ERROR", "_schema"),
    ('{"kind": "echo"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE", None),
    ("kind=echo", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE", None),
    ("", "application/json", 422, "VALIDATION_ERROR", "_schema"),
    ('{"params": {}}', "application/json", 422, "VALIDATION_ERROR", "kind"),
    ('{"kind": "nope", "params": {}}', "application/json", 422, "VALIDATION_ERROR", "kind"),
    ('{"kind": 7, "params": {}}', "application/json", 422, "VALIDATION_ERROR", "kind"),
    ('{"kind": "echo", "params": []}', "application/json", 422, "VALIDATION_ERROR", "params"),
    ('{"kind": "echo", "params": {}, "priority": 10}', "application/json", 422,
     "VALIDATION_ERROR", "priority"),
    ('{"kind": "echo", "params": {}, "priority": "1"}', "application/json", 422,
     "VALIDATION_ERROR", "priority"),
    ('{"kind": "echo", "params": {}, "max_retries": -1}', "application/json", 422,
     "VALIDATION_ERROR", "max_retries"),
    ('{"kind": "echo", "params": {}, "timeout_s": 0}', "application/json", 422,
     "VALIDATION_ERROR", "timeout_s"),
    ('{"kind": "echo", "params": {}, "countdown_s": -5}', "application/json", 422,
     "VALIDATION_ERROR", "countdown_s"),
    ('{"kind": "echo", "params": {}, "card_id": ""}', "application/json", 422,
     "VALIDATION_ERROR", "card_id"),
    ('{"kind": "echo", "params": {}, "surprise": 1}', "application/json", 422,
     "VALIDATION_ERROR", "surprise"),
    ('{"kind": "sleep", "params": {"seconds": "ten"}}', "application/json", 422,
     "VALIDATION_ERROR", "params.seconds"),
    ('{"kind": "sleep", "params": {"seconds": 1, "extra": 1}}', "application/json", 422,
     "VALIDATION_ERROR", "params"),
    ('{"kind": "fail", "params": {}}', "application/json", 422, "VALIDATION_ERROR", "params"),
    ('{"kind": "echo", "params": {"a": "x\\u0000y"}}', "application/json", 422,
     "VALIDATION_ERROR", "params.a"),
    ('{"kind": "echo", "params": {"k\\u0000": 1}}', "application/json", 422,
     "VALIDATION_ERROR", "params"),
    ('{"kind": "echo", "params": {"a": ' + "[" * 80 + "]" * 80 + "}}", "application/json", 422,
     "VALIDATION_ERROR", "params.a"),
    ('{"kind": "echo", "params": {"a": ' + "[" * 200 + "]" * 200 + "}}", "application/json", 422,
     "VALIDATION_ERROR", "params.a"),
    ('{"kind": "echo", "params": {"big": 1e400}}', "application/json", 422, "VALIDATION_ERROR",
     "params.big"),
    ('{"kind": "echo", "params": {"big": [-1e999]}}', "application/json", 422,
     "VALIDATION_ERROR", "params.big.0"),
    ('{"kind": "echo", "params": {"big": ' + "9" * 5000 + "}}", "application/json", 400,
     "BAD_JSON", "_schema"),
    ('{"kind": "echo", "params": {}, "priority": 99999999999999999999999}', "application/json",
     422, "VALIDATION_ERROR", "priority"),
    ('{"kind": "echo", "params": {}, "timeout_s": 1e400}', "application/json", 422,
     "VALIDATION_ERROR", "timeout_s"),
    ('{"kind": "echo", "params": {"s": "\\ud800"}}', "application/json", 422,
     "VALIDATION_ERROR", "params.s"),
]


@pytest.mark.parametrize("raw,ctype,status,code,field", BAD_BODIES)
def test_bad_submissions_are_4xx_field_by_field_and_write_nothing(http, raw, ctype, status, code,
                                                                  field):
    client, auth = http
    before = row_counts()
    data = raw.encode("latin-1") if raw.startswith("\xff") else raw.encode()
    resp = client.post(JOBS, data=data, headers={**auth, "Content-Type": ctype})
    err = assert_envelope(resp, status, code)
    if field is not None:
        assert field in err["details"], err
    assert row_counts() == before


def test_body_over_the_limit_is_413(http):
    client, auth = http
    before = row_counts()
    big = json.dumps({"kind": "echo", "params": {"blob": "x" * (256 * 1024)}})
    resp = client.post(JOBS, data=big, headers={**auth, "Content-Type": "application/json"})
    assert_envelope(resp, 413, "PAYLOAD_TOO_LARGE")
    assert row_counts() == before


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there", "ünï"])
def test_bad_idempotency_key_is_422(http, key):
    client, auth = http
    before = row_counts()
    resp = client.post(JOBS, json={"kind": "echo", "params": {}},
                       headers={**auth, "Idempotency-Key": key.encode().decode("latin-1")})
    err = assert_envelope(resp, 422, "VALIDATION_ERROR")
    assert "Idempotency-Key" in err["details"]
    assert row_counts() == before


@pytest.mark.parametrize(
    "query,field",
    [("status=bogus", "status"), ("limit=0", "limit"), ("limit=201", "limit"),
     ("limit=abc", "limit"), ("cursor=%%%", "cursor"), ("cursor=bm9wZQ", "cursor"),
     ("card_id=a%00b", "card_id"), ("zzz=1", "zzz")],
)
def test_bad_list_queries_are_422(http, query, field):
    client, auth = http
    err = assert_envelope(client.get(f"{JOBS}?{query}", headers=auth), 422, "VALIDATION_ERROR")
    assert any(k.startswith(field) for k in err["details"]), err


def test_unknown_routes_and_wrong_methods_use_the_envelope(http):
    client, auth = http
    assert_envelope(client.get("/api/v1/nothing-here", headers=auth), 404, "NOT_FOUND")
    assert_envelope(client.delete(JOBS, headers=auth), 405, "METHOD_NOT_ALLOWED")
    assert_envelope(client.put(f"{JOBS}/{uuid.uuid4()}", headers=auth), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("job_id", ["not-a-uuid", str(uuid.uuid4()), "1 OR 1=1", "%00"])
def test_unknown_job_ids_are_404(http, job_id):
    client, auth = http
    for path in ("", "/events", "/result"):
        assert_envelope(client.get(f"{JOBS}/{job_id}{path}", headers=auth), 404, "NOT_FOUND")
    for action in ("cancel", "retry"):
        assert_envelope(client.post(f"{JOBS}/{job_id}/{action}", headers=auth), 404, "NOT_FOUND")


def test_another_tenants_job_answers_404_everywhere(http, other_tenant):
    client, auth = http
    job = client.post(JOBS, json={"kind": "echo", "params": {}}, headers=auth).get_json()
    intruder = {"Authorization": f"Bearer {other_tenant[0]}"}
    for path in ("", "/events", "/result"):
        assert_envelope(client.get(f"{JOBS}/{job['id']}{path}", headers=intruder), 404,
                        "NOT_FOUND")
    for action in ("cancel", "retry"):
        assert_envelope(client.post(f"{JOBS}/{job['id']}/{action}", headers=intruder), 404,
                        "NOT_FOUND")
    listed = client.get(JOBS, headers=intruder).get_json()["items"]
    assert job["id"] not in [j["id"] for j in listed]
    assert client.get(f"{JOBS}/{job['id']}", headers=auth).get_json()["status"] == "queued"


def test_retry_of_a_queued_job_is_409_and_changes_nothing(http):
    client, auth = http
    job = client.post(JOBS, json={"kind": "echo", "params": {}}, headers=auth).get_json()
    before = row_counts()
    err = assert_envelope(client.post(f"{JOBS}/{job['id']}/retry", headers=auth), 409,
                          "INVALID_TRANSITION")
    assert err["details"]
    assert row_counts() == before


def test_over_the_rate_limit_is_429_with_retry_after(domain, tenant, other_tenant):
    from api import create_app
    from app import config

    app = create_app(domain.with_(rate_limit="3/minute"))
    config.install(domain)  # only this app is limited this tightly
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tenant[0]}"}
    for _ in range(3):
        assert client.get(JOBS, headers=auth).status_code == 200
    resp = client.get(JOBS, headers=auth)
    assert_envelope(resp, 429, "RATE_LIMITED")
    assert int(resp.headers["Retry-After"]) > 0
    other = {"Authorization": f"Bearer {other_tenant[0]}"}
    assert client.get(JOBS, headers=other).status_code == 200  # limits are per key
    assert client.get("/health/liveness").status_code == 200  # operations are not limited


def test_a_query_parameter_given_twice_is_refused(http):
    client, auth = http
    resp = client.get(f"{JOBS}?status=queued&status=bogus", headers=auth)
    err = assert_envelope(resp, 422, "VALIDATION_ERROR")
    assert err["details"] == {"status": ["give it once"]}

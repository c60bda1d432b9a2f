"""What one request may ask for is bounded: `timeout_s` by MAX_TIMEOUT_S, `sleep`'s `seconds`
and `steps` by its params schema. Refusals are 422, field by field, and write nothing."""

from __future__ import annotations

import pytest

from app import config
from tests.integration.conftest import row_counts

V1 = "/api/v1"


@pytest.fixture
def bounded(domain):
    """This process's settings with a small MAX_TIMEOUT_S (the API reads config.current())."""
    config.install(domain.with_(max_timeout_s=120.0))
    yield
    config.install(domain)


def submit(http, body: dict):
    client, auth = http
    return client.post(f"{V1}/jobs", json=body, headers=auth)


def details(resp) -> dict:
    assert resp.status_code == 422, resp.json
    assert resp.json["error"]["code"] == "VALIDATION_ERROR"
    return resp.json["error"]["details"]


def test_a_timeout_beyond_the_maximum_is_refused_and_nothing_is_written(http, bounded):
    before = row_counts()
    resp = submit(http, {"kind": "echo", "params": {}, "timeout_s": 121})
    assert details(resp) == {"timeout_s": ["must be at most 120 (MAX_TIMEOUT_S)"]}
    assert row_counts() == before


def test_a_timeout_at_the_maximum_is_accepted(http, bounded):
    resp = submit(http, {"kind": "echo", "params": {}, "timeout_s": 120, "countdown_s": 3600})
    assert resp.status_code == 202, resp.json
    assert resp.json["timeout_s"] == 120


def test_the_default_timeout_is_held_to_the_maximum(http, bounded):
    """DEFAULT_TIMEOUT_S above MAX_TIMEOUT_S (a misconfiguration) does not escape the bound."""
    resp = submit(http, {"kind": "echo", "params": {}, "countdown_s": 3600})
    assert resp.status_code == 202, resp.json
    assert resp.json["timeout_s"] == 120


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"seconds": 3601}, "params.seconds"),
        ({"seconds": 1, "steps": 101}, "params.steps"),
    ],
)
def test_sleep_is_bounded(http, params, field):
    before = row_counts()
    found = details(submit(http, {"kind": "sleep", "params": params}))
    assert list(found) == [field], found
    assert row_counts() == before


def test_sleep_at_its_bounds_is_accepted(http):
    body = {"kind": "sleep", "params": {"seconds": 3600, "steps": 100}, "countdown_s": 3600}
    assert submit(http, body).status_code == 202


def test_every_field_at_fault_is_named_at_once(http, bounded):
    """Params and the timeout refused together: one answer names both."""
    body = {"kind": "sleep", "params": {"seconds": 5000, "steps": 500}, "timeout_s": 999}
    found = details(submit(http, body))
    assert set(found) == {"params.seconds", "params.steps", "timeout_s"}, found


def test_the_document_and_the_generators_list_show_the_bounds(flask_app, tenant, bounded):
    """The OpenAPI document gives this deployment's MAX_TIMEOUT_S; the params schemas that
    /api/v1/generators serves (the console's form) give sleep's maxima."""
    client = flask_app.test_client()
    doc = client.get(f"{V1}/openapi.json").json
    submit_schema = doc["components"]["schemas"]["JobSubmit"]
    assert submit_schema["properties"]["timeout_s"]["maximum"] == 120
    gens = client.get(f"{V1}/generators", headers={"Authorization": f"Bearer {tenant[0]}"}).json
    sleep = next(g for g in gens["items"] if g["kind"] == "sleep")
    props = sleep["params_schema"]["properties"]
    assert (props["seconds"]["maximum"], props["steps"]["maximum"]) == (3600, 100)

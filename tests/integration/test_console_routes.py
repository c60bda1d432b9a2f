"""The console's routes on the API: its page, its config, the generators its form is built from."""

from __future__ import annotations

import pytest

from api import console


def test_config_names_the_relay_on_this_host_by_default(flask_app):
    resp = flask_app.test_client().get("/console/config.json", base_url="http://example.test:8000")
    port = flask_app.extensions["orchestra.settings"].relay_port
    assert resp.status_code == 200
    assert resp.json == {"relay_url": f"http://example.test:{port}"}


def test_config_takes_console_relay_url(domain):
    from api import create_app

    app = create_app(domain.with_(console_relay_url="https://relay.example.test/"))
    assert app.test_client().get("/console/config.json").json == {
        "relay_url": "https://relay.example.test"
    }


def test_page_is_served_with_a_policy_or_a_hint_when_not_built(flask_app):
    resp = flask_app.test_client().get("/")
    if not (console.BUILD_DIR / "index.html").is_file():
        assert resp.status_code == 503 and b"make console" in resp.data
        pytest.skip("the console is not built here (make console)")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy


def test_generators_list_their_params_schema(http):
    client, auth = http
    resp = client.get("/api/v1/generators", headers=auth)
    assert resp.status_code == 200
    kinds = {g["kind"]: g for g in resp.json["items"]}
    assert {"echo", "sleep", "fail", "http"} <= set(kinds)
    assert kinds["sleep"]["params_schema"]["required"] == ["seconds"]
    assert kinds["sleep"]["description"]


def test_generators_need_a_key(flask_app):
    resp = flask_app.test_client().get("/api/v1/generators")
    assert resp.status_code == 401 and resp.json["error"]["code"] == "UNAUTHORIZED"

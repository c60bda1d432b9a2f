"""Operator surfaces on real processes: health, readiness, OpenAPI, the keys CLI."""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from tests.support.isolation import ROOT
from tests.support.stack import VENV_BIN, Stack, stack_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def lone_api(domain):
    """Start one api process with the given settings changes."""
    stacks = []

    def start(**changes):
        stack = Stack(stack_env(domain.with_(**changes)))
        stacks.append(stack)
        api = stack.start("api", API_WORKERS=1)
        stack.wait_http(api)
        return stack.url(api)

    yield start
    for stack in stacks:
        stack.stop()


def test_readiness_is_healthy_when_everything_answers(lone_api):
    base = lone_api()
    assert requests.get(base + "/health/liveness", timeout=5).status_code == 200
    resp = requests.get(base + "/health/readiness", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "healthy", "checks": {"database": "ok", "redis": "ok", "broker": "ok"},
    }


def test_readiness_names_the_dependency_that_fails(lone_api):
    base = lone_api(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert requests.get(base + "/health/liveness", timeout=5).status_code == 200
    resp = requests.get(base + "/health/readiness", timeout=10)
    assert resp.status_code == 503
    body = resp.json()
    assert body["failed"] == ["database"] and body["checks"]["redis"] == "ok"


def test_database_down_answers_503_with_the_envelope(lone_api, tenant):
    base = lone_api(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    resp = requests.post(base + "/api/v1/jobs", json={"kind": "echo", "params": {}},
                         headers={"Authorization": f"Bearer {tenant[0]}"}, timeout=10)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE"


def test_openapi_document_lists_every_route_and_docs_page_renders_it(lone_api):
    base = lone_api()
    spec = requests.get(base + "/api/v1/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.")
    for path, method in [("/api/v1/jobs", "post"), ("/api/v1/jobs", "get"),
                         ("/api/v1/jobs/{job_id}", "get"), ("/api/v1/jobs/{job_id}/cancel", "post"),
                         ("/api/v1/jobs/{job_id}/retry", "post"),
                         ("/api/v1/jobs/{job_id}/events", "get"),
                         ("/api/v1/jobs/{job_id}/result", "get"), ("/health/readiness", "get")]:
        assert method in spec["paths"][path], (path, method)
    assert "Job" in spec["components"]["schemas"]
    docs = requests.get(base + "/docs", timeout=5)
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text


def test_keys_cli_prints_only_the_secret_on_its_last_line_and_it_works(domain, lone_api):
    env = stack_env(domain)
    out = subprocess.run(
        [os.path.join(VENV_BIN, "flask"), "--app", "api", "keys", "create", "--tenant", "cli-demo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    secret = out.stdout.strip().splitlines()[-1]
    assert secret.startswith("orc_") and " " not in secret
    base = lone_api()
    ok = requests.get(base + "/api/v1/jobs", headers={"Authorization": f"Bearer {secret}"},
                      timeout=5)
    assert ok.status_code == 200
    from sqlalchemy import text

    from app import db

    with db.transaction() as conn:
        stored = conn.execute(text("SELECT key_hash FROM api_keys")).scalars().all()
    assert secret not in stored
    bad = subprocess.run(
        [os.path.join(VENV_BIN, "flask"), "--app", "api", "keys", "create", "--tenant", "Bad Name"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode != 0 and "tenant" in bad.stderr


def test_keys_verify_accepts_a_key_and_refuses_a_made_up_one(domain, tenant):
    env = stack_env(domain)
    flask = os.path.join(VENV_BIN, "flask")
    good = subprocess.run([flask, "--app", "api", "keys", "verify", tenant[0]], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and good.stdout.strip() == tenant[1].name
    bad = subprocess.run([flask, "--app", "api", "keys", "verify", "orc_made_up"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1


def test_keys_cli_scopes_and_revocation(domain, lone_api):
    env = stack_env(domain)

    def flask(*args, check=True):
        return subprocess.run([os.path.join(VENV_BIN, "flask"), "--app", "api", "keys", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                              check=check)

    secret = flask("create", "--tenant", "cli-scoped", "--scope", "jobs:read").stdout.split()[-1]
    base = lone_api()
    auth = {"Authorization": f"Bearer {secret}"}
    assert requests.get(base + "/api/v1/jobs", headers=auth, timeout=5).status_code == 200
    post = requests.post(base + "/api/v1/jobs", json={"kind": "echo", "params": {}}, headers=auth,
                         timeout=5)
    assert post.status_code == 403 and post.json()["error"]["code"] == "FORBIDDEN"
    listed = flask("list", "--tenant", "cli-scoped").stdout
    assert secret[:12] in listed and "jobs:read" in listed and secret not in listed
    assert "revoked 1 key" in flask("revoke", secret[:12]).stdout
    assert requests.get(base + "/api/v1/jobs", headers=auth, timeout=5).status_code == 401
    assert flask("revoke", secret[:12], check=False).returncode != 0
    bad = flask("create", "--tenant", "cli-scoped", "--scope", "root", check=False)
    assert bad.returncode != 0 and "root" in bad.stderr

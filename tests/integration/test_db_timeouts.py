"""Every Postgres connection has a statement_timeout and a lock_timeout of its process role,
and a request blocked on a lock gets a clean 503, not a hang or a 500."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from app import bootstrap, config, db
from app.config import PROCESS_ROLES

# Distinct values per kind (ms), so a kind that took another's would show.
TIMEOUTS = {
    "api": (4100, 1100),
    "relay": (4200, 1200),
    "worker": (4300, 1300),
    "cli": (4400, 1400),
}


def _settings(domain):
    changes = {}
    for kind, (statement_ms, lock_ms) in TIMEOUTS.items():
        changes[f"db_statement_timeout_{kind}_s"] = statement_ms / 1000
        changes[f"db_lock_timeout_{kind}_s"] = lock_ms / 1000
    return domain.with_(**changes)


def _reported() -> tuple[int, int]:
    """What this process's connections report (`SHOW`, in milliseconds)."""
    with db.transaction() as conn:
        rows = dict(
            conn.execute(
                text(
                    "SELECT name, setting::int FROM pg_settings "
                    "WHERE name IN ('statement_timeout', 'lock_timeout')"
                )
            ).all()
        )
    return rows["statement_timeout"], rows["lock_timeout"]


@pytest.fixture
def rewire(domain):
    """Put this process's engine back as the session had it."""
    yield
    bootstrap.init(domain, role="api")
    config.install(domain)


def test_each_process_kind_sets_its_timeouts(domain, rewire):
    assert set(TIMEOUTS) == set(PROCESS_ROLES)
    settings = _settings(domain)
    for role in PROCESS_ROLES:
        bootstrap.init(settings, role=role)
        assert _reported() == TIMEOUTS[role], role


def test_the_entry_points_pick_their_role(domain, rewire):
    from api import create_app
    from workers import _wire, make_celery

    settings = _settings(domain)
    create_app(settings)
    assert _reported() == TIMEOUTS["api"]
    _wire(make_celery(settings))  # what a worker (and each pool child) runs at start
    assert _reported() == TIMEOUTS["worker"]
    from api.relay import create_relay_app

    create_relay_app(settings.with_(relay_async_mode="threading"))
    assert _reported() == TIMEOUTS["relay"]


def test_a_request_blocked_on_a_lock_gets_503_not_a_hang(domain, tenant, rewire):
    from api import create_app

    app = create_app(domain.with_(db_lock_timeout_api_s=0.3))
    client, auth = app.test_client(), {"Authorization": f"Bearer {tenant[0]}"}
    job = client.post("/api/v1/jobs", json={"kind": "echo", "params": {}}, headers=auth).json
    holder = create_engine(domain.database_url).connect()
    tx = holder.begin()
    holder.execute(text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": job["id"]})
    # Without lock_timeout the request would wait for this holder; let it go after a while
    # so such a run fails on the status below instead of hanging.
    release = threading.Timer(15, tx.rollback)
    release.start()
    try:
        t0 = time.monotonic()
        resp = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth)
        waited = time.monotonic() - t0
    finally:
        release.cancel()
        if tx.is_active:
            tx.rollback()
        holder.close()
    assert resp.status_code == 503, resp.json
    assert resp.json["error"]["code"] == "DEPENDENCY_UNAVAILABLE"
    assert "lock timeout" in resp.json["error"]["details"]["dependency"][0]
    assert waited < 15
    after = client.get(f"/api/v1/jobs/{job['id']}", headers=auth).json
    assert after["status"] == "queued" and not after["cancel_requested"]  # nothing written

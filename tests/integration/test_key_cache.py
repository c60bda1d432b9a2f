"""An api process remembers the keys it verified, and a revocation still holds at the next
request, whichever process revoked: the revocation generation in Redis says when to stop
trusting what it remembers."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from sqlalchemy import func, update

from app import config, db, tenants
from app.models import ApiKey
from scripts.sandbox import ROOT
from tests.integration.test_metrics_counts import statements
from tests.support.stack import VENV_BIN, stack_env


@pytest.fixture
def secret(domain):
    return tenants.create_key(f"kc-{uuid.uuid4().hex[:10]}")


def test_a_verified_key_is_not_looked_up_again(secret):
    assert tenants.authenticate(secret) is not None
    with statements() as seen:
        again = tenants.authenticate(secret)
    assert again is not None and again.key_prefix == secret[:12]
    assert seen == []


def test_a_key_revoked_by_another_process_is_refused_at_the_next_request(domain, secret):
    assert tenants.authenticate(secret) is not None  # remembered here
    subprocess.run(
        [os.path.join(VENV_BIN, "flask"), "--app", "api", "keys", "revoke", secret[:12]],
        cwd=ROOT, env=stack_env(domain), capture_output=True, text=True, timeout=60, check=True,
    )
    assert tenants.authenticate(secret) is None  # no wait: the CLI moved the generation


def test_without_redis_nothing_remembered_is_trusted(domain, secret, monkeypatch):
    assert tenants.authenticate(secret) is not None
    monkeypatch.setattr(tenants._VerifiedKeys, "generation", staticmethod(lambda: None))
    with statements() as seen:
        assert tenants.authenticate(secret) is not None
    assert any("FROM tenants JOIN api_keys" in s for s in seen), seen


def test_a_revocation_in_sql_alone_holds_after_auth_cache_s(domain, secret):
    config.install(domain.with_(auth_cache_s=0.5))
    try:
        key_id = tenants.authenticate(secret).key_id
        with db.transaction() as conn:
            conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=func.now()))
        deadline = time.monotonic() + 10
        while tenants.authenticate(secret) is not None:
            assert time.monotonic() < deadline, "a key revoked in SQL was trusted for 10 s"
            time.sleep(0.05)
    finally:
        config.install(domain)


def test_auth_cache_s_zero_reads_postgres_every_time(domain, secret):
    config.install(domain.with_(auth_cache_s=0))
    try:
        tenants.authenticate(secret)
        with statements() as seen:
            assert tenants.authenticate(secret) is not None
        assert len(seen) == 1
    finally:
        config.install(domain)


def test_remembered_false_always_asks_postgres(secret):
    """The relay's connect: a key revoked in SQL alone must not get in on what was cached."""
    assert tenants.authenticate(secret) is not None  # remembered
    with statements() as seen:
        assert tenants.authenticate(secret, remembered=False) is not None
    assert len(seen) == 1

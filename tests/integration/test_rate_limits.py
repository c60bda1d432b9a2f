"""Rate limits: a bucket per verified key, and one per client address for failed
authentications, so random tokens do not each get a fresh bucket."""

from __future__ import annotations

import secrets
import uuid

import pytest

from app import config, tenants
from tests.integration.test_api_errors import assert_envelope

JOBS = "/api/v1/jobs"
AGENTS = "/api/v1/agents"


@pytest.fixture
def limited(domain):
    """An app of its own with tight limits (and its own Redis counters)."""
    from api import create_app

    def make(**changes):
        prefix = f"{domain.channel_prefix}-rl-{uuid.uuid4().hex[:8]}"
        return create_app(domain.with_(channel_prefix=prefix, **changes)).test_client()

    yield make
    config.install(domain)  # only these apps are limited this tightly


def random_token() -> dict:
    # Shaped like a real secret, so each one costs a lookup and would name its own bucket.
    return {"Authorization": f"Bearer {tenants.SECRET_PREFIX}{secrets.token_urlsafe(32)}"}


def addr(ip: str) -> dict:
    return {"REMOTE_ADDR": ip}


def test_random_tokens_from_one_address_share_one_bucket(limited, tenant):
    client = limited(auth_fail_limit="4/minute", rate_limit="1000/minute")
    for _ in range(4):
        resp = client.get(JOBS, headers=random_token(), environ_base=addr("10.1.0.1"))
        assert_envelope(resp, 401, "UNAUTHORIZED")
    # A fifth random token, on another blueprint too: the address's failures are spent.
    for path in (JOBS, AGENTS):
        resp = client.get(path, headers=random_token(), environ_base=addr("10.1.0.1"))
        assert_envelope(resp, 429, "RATE_LIMITED")
        assert int(resp.headers["Retry-After"]) > 0
    no_key = client.get(JOBS, environ_base=addr("10.1.0.1"))
    assert_envelope(no_key, 429, "RATE_LIMITED")
    # A valid key from the same address has its own bucket; another address its own.
    valid = {"Authorization": f"Bearer {tenant[0]}"}
    assert client.get(JOBS, headers=valid, environ_base=addr("10.1.0.1")).status_code == 200
    other = client.get(JOBS, headers=random_token(), environ_base=addr("10.1.0.2"))
    assert_envelope(other, 401, "UNAUTHORIZED")


def test_a_valid_keys_bucket_is_its_own_and_named_by_the_key(limited, tenant, other_tenant):
    client = limited(rate_limit="3/minute", auth_fail_limit="1000/minute")
    mine = {"Authorization": f"Bearer {tenant[0]}"}
    for _ in range(3):
        assert client.get(JOBS, headers=mine, environ_base=addr("10.2.0.1")).status_code == 200
    # The same key from another address, on another route, is the same bucket.
    resp = client.get(AGENTS, headers=mine, environ_base=addr("10.2.0.2"))
    assert_envelope(resp, 429, "RATE_LIMITED")
    theirs = {"Authorization": f"Bearer {other_tenant[0]}"}
    assert client.get(JOBS, headers=theirs, environ_base=addr("10.2.0.1")).status_code == 200
    # Failures from this address do not eat into the keys' buckets, nor theirs into it.
    resp = client.get(JOBS, headers=random_token(), environ_base=addr("10.2.0.1"))
    assert_envelope(resp, 401, "UNAUTHORIZED")


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(limited):
    client = limited(auth_fail_limit="2/minute")
    for i in range(3):
        resp = client.get(
            JOBS,
            headers={**random_token(), "X-Forwarded-For": f"192.0.2.{i}"},
            environ_base=addr("10.3.0.1"),
        )
    assert_envelope(resp, 429, "RATE_LIMITED")  # one bucket: the peer's address

    behind_proxy = limited(auth_fail_limit="2/minute", trusted_proxies=1)
    for i in range(3):
        resp = behind_proxy.get(
            JOBS,
            headers={**random_token(), "X-Forwarded-For": f"192.0.2.{i}"},
            environ_base=addr("10.3.0.9"),
        )
        assert_envelope(resp, 401, "UNAUTHORIZED")  # each forwarded client has its bucket

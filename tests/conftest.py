"""Fixtures shared by every test: an isolated database and Redis db for the run."""

from __future__ import annotations

import uuid

import pytest

from app.config import Settings
from scripts import sandbox
from tests.support import isolation


@pytest.fixture(scope="session")
def run_name() -> str:
    """This test run's unique name."""
    return isolation.run_id()


@pytest.fixture(scope="session")
def gen_service_port() -> int:
    """The port of this run's fake generation services: the one loopback `host:port` listed in
    HTTP_PRIVATE_HOSTS, so the `http` generator may call them and nothing else on 127.0.0.1."""
    return sandbox.free_port()


@pytest.fixture(scope="session")
def llm_port() -> int:
    """The port of this run's fake OpenAI-compatible chat server (also in HTTP_PRIVATE_HOSTS)."""
    return sandbox.free_port()


@pytest.fixture(scope="session")
def fake_llm_server(llm_port):
    """The fake chat server (`tests/support/fake_llm.py`), one process for the run."""
    from tests.support.fake_llm import FakeLLM

    server = FakeLLM(llm_port).start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_llm_server):
    """The fake chat server, behaving and with no calls seen, for one test."""
    fake_llm_server.reset()
    return fake_llm_server


@pytest.fixture(scope="session")
def base_settings(run_name, gen_service_port, llm_port):
    """Settings pointing at this run's own database, Redis db and channel prefix."""
    from cryptography.fernet import Fernet

    database_url = isolation.create_database(f"orchestra_test_{run_name}")
    redis_url = sandbox.claim_redis_db(isolation.BASE_REDIS_URL, run_name)
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        channel_prefix=f"orchestra-test-{run_name}",
        retry_backoff_base_s=0.2,
        retry_backoff_max_s=1.0,
        sweep_interval_s=0.5,
        outbox_grace_s=1.0,
        worker_lost_redelivery_s=6.0,
        # Tests poll hard; the limit itself is tested with an app of its own.
        rate_limit="100000/minute",
        http_private_hosts=f"127.0.0.1:{gen_service_port},127.0.0.1:{llm_port}",
        auth_fail_limit="100000/minute",
        # /metrics serves counts the sweep refreshes; tests wait for them, briefly.
        metrics_counts_interval_s=0.5,
        # Many tests queue jobs no worker ever takes, and the broker's room is shared by all
        # tenants: the scheduling tests set their own (tests/integration/test_scheduler.py).
        scheduler_ahead=10000,
        # Chat providers' keys are encrypted with it (a secret of this run's own).
        provider_key_secrets=Fernet.generate_key().decode(),
        log_level="INFO",
    )
    yield settings
    sandbox.release_redis_db(redis_url, run_name)
    sandbox.drop_database(database_url)


@pytest.fixture(scope="session")
def domain(base_settings):
    """The domain wired in this process (database, Redis, a real Celery producer)."""
    from app import bootstrap
    from workers import make_celery
    from workers.transport import batch_sender

    celery = make_celery(base_settings)
    bootstrap.init(base_settings, sender=celery.send_task, batch=batch_sender(celery))
    return base_settings


@pytest.fixture
def tenant(domain):
    """A fresh tenant with an API key: `(secret, TenantRef)`."""
    from app import tenants

    secret = tenants.create_key(f"t-{uuid.uuid4().hex[:10]}")
    return secret, tenants.authenticate(secret)


@pytest.fixture
def other_tenant(domain):
    """A second tenant, to show isolation."""
    from app import tenants

    secret = tenants.create_key(f"o-{uuid.uuid4().hex[:10]}")
    return secret, tenants.authenticate(secret)


@pytest.fixture
def no_host_limits(domain):
    """No host hold (`Retry-After`) or shared-rate window left by another test, before and
    after this one: the `http` generator's keys in this run's Redis."""
    from app import pubsub

    def forget():
        client = pubsub.client()
        for pattern in ("http-hold:*", "http-rate*"):
            keys = list(client.scan_iter(f"{domain.channel_prefix}:{pattern}"))
            if keys:
                client.delete(*keys)

    forget()
    yield
    forget()

"""Redis passwords and TLS work through the URLs alone, for every Redis client we have: the
Celery broker (kombu), our redis-py clients and Flask-Limiter's storage. Each against a
redis-server of the test's own on the loopback."""

from __future__ import annotations

import pytest
import redis
from limits.storage import storage_from_string

from app import pubsub
from tests.support import private_redis
from tests.support.private_redis import PrivateRedis

PASSWORD = "s3cret-for-tests"


@pytest.fixture(scope="module")
def tls_redis():
    if not private_redis.available(tls=True):
        pytest.skip("needs redis-server and openssl")
    server = PrivateRedis(PASSWORD, tls=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def password_redis():
    if not private_redis.available():
        pytest.skip("needs redis-server")
    server = PrivateRedis(PASSWORD)
    server.start()
    yield server
    server.stop()


def _broker(settings, url: str):
    """A broker connection of our Celery app, as a worker or the api would open it."""
    from workers import make_celery

    app = make_celery(settings.with_(redis_url=url, broker_url=""))
    return app.connection_for_write()


def _broker_round_trip(settings, url: str, server: PrivateRedis) -> None:
    """Publish one message through kombu and find it in the server's queue."""
    from workers import make_celery

    app = make_celery(settings.with_(redis_url=url, broker_url=""))
    app.send_task("orchestra.test.noop", queue="tls-probe")
    assert server.client().llen("tls-probe") == 1
    server.client().delete("tls-probe")


def test_the_broker_refuses_a_tls_server_it_cannot_verify(domain, tls_redis):
    """A rediss:// URL checks the server's certificate: one signed by an unknown CA is
    refused (kombu left alone would connect without looking at it)."""
    conn = _broker(domain, tls_redis.url())
    try:
        with pytest.raises(Exception, match="certificate verify failed"):
            conn.ensure_connection(max_retries=0)
    finally:
        conn.release()


def test_every_client_speaks_tls_through_the_url(domain, tls_redis):
    url = tls_redis.trusting_url()
    _broker_round_trip(domain, url, tls_redis)
    client = pubsub.init(url, "tls-test")
    try:
        assert client.ping()
    finally:
        pubsub.init(domain.redis_url, domain.channel_prefix, domain.dependency_timeout_s)
    assert storage_from_string(url).check()


def test_every_client_authenticates_through_the_url(domain, password_redis):
    url = password_redis.url()
    _broker_round_trip(domain, url, password_redis)
    assert redis.Redis.from_url(url).ping()
    assert storage_from_string(url).check()


def test_the_password_is_really_required(domain, password_redis):
    """Without the password the same server refuses: the clients above did authenticate."""
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=password_redis.port).ping()
    conn = _broker(domain, f"redis://127.0.0.1:{password_redis.port}/0")
    try:
        with pytest.raises(Exception, match="(?i)auth"):
            conn.ensure_connection(max_retries=0)
    finally:
        conn.release()

"""The whole stack on a Redis that requires a password, and on one that speaks only TLS: the
URL is all each process is told. A job runs end to end through every Redis client: the API's
rate limiter and publish, the broker, the system worker's sweep (a delayed job), the relay."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Client, start_stack
from tests.support import private_redis
from tests.support.private_redis import PrivateRedis
from tests.support.sio import EventClient

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-redis-password"


def _run_a_job_end_to_end(settings, tenant) -> None:
    stack = start_stack(settings, workers=1, relays=1)
    try:
        client = Client(stack.url(stack.procs_named("api")[0]), tenant[0])
        watcher = EventClient(stack.url(stack.procs_named("relay")[0]), client.secret)
        try:
            job = client.submit("sleep", {"seconds": 0.3, "steps": 3})
            assert watcher.subscribe(f"job:{job['id']}", since=0) == {"ok": True}
            client.wait_status(job["id"], "completed", timeout=40)
            events = watcher.wait_for_status(job["id"], "completed", timeout=20)
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            delayed = client.submit("echo", {"later": True}, countdown_s=1)  # sent by the sweep
            client.wait_status(delayed["id"], "completed", timeout=40)
        finally:
            watcher.close()
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


@pytest.mark.skipif(not private_redis.available(), reason="needs redis-server")
def test_the_stack_runs_on_a_redis_with_a_password(domain, tenant):
    server = PrivateRedis(PASSWORD)
    server.start()
    try:
        _run_a_job_end_to_end(domain.with_(redis_url=server.url()), tenant)
    finally:
        server.stop()


@pytest.mark.skipif(not private_redis.available(tls=True), reason="needs redis-server, openssl")
def test_the_stack_runs_on_a_tls_redis(domain, tenant):
    server = PrivateRedis(PASSWORD, tls=True)
    server.start()
    try:
        _run_a_job_end_to_end(domain.with_(redis_url=server.trusting_url()), tenant)
    finally:
        server.stop()

"""End-to-end fixtures: api, two relays, two workers, the io worker, the system worker and
beat as real processes."""

from __future__ import annotations

import pytest
import requests

from tests.support.stack import Stack, stack_env, wait_until


def _ping_workers(settings, expected: int) -> bool:
    from workers import make_celery

    replies = make_celery(settings).control.ping(timeout=1.0) or []
    return len(replies) >= expected


def start_stack(settings, workers: int = 2, relays: int = 2, io_workers: int = 1) -> Stack:
    """Start the stack and wait until every part answers. `workers` are tenants' prefork
    workers, `io_workers` the gevent ones of the kinds that wait on a remote service; the
    system worker (sweeps, heartbeats) is always there besides them."""
    stack = Stack(stack_env(settings))
    try:
        api = stack.start("api", API_WORKERS=2)
        for _ in range(relays):
            stack.start("relay")
        for _ in range(workers):
            stack.start("worker")
        for _ in range(io_workers):
            stack.start("io", IO_CONCURRENCY=50)
        stack.start("system")
        stack.start("beat")
        stack.wait_http(api)
        for relay in stack.procs_named("relay"):
            stack.wait_http(relay)
        expected = workers + io_workers + 1
        wait_until(lambda: _ping_workers(settings, expected), 60, 0.5, f"{expected} workers")
    except BaseException:
        print(stack.logs())
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def stack(domain):
    """A running stack for the tests of one module."""
    stack = start_stack(domain)
    yield stack
    print(stack.logs())
    stack.stop()


class Client:
    """A tenant's view of the HTTP API."""

    def __init__(self, base: str, secret: str):
        self.base, self.secret = base, secret
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {secret}"

    def post(self, path: str, json=None, **kw):
        return self.http.post(self.base + path, json=json, timeout=10, **kw)

    def get(self, path: str, **kw):
        return self.http.get(self.base + path, timeout=10, **kw)

    def submit(self, kind: str, params: dict, **fields) -> dict:
        resp = self.post("/api/v1/jobs", {"kind": kind, "params": params, **fields})
        assert resp.status_code == 202, resp.text
        return resp.json()

    def job(self, job_id: str) -> dict:
        return self.get(f"/api/v1/jobs/{job_id}").json()

    def wait_status(self, job_id: str, statuses, timeout: float = 30) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        return wait_until(
            lambda: (j := self.job(job_id))["status"] in statuses and j,
            timeout,
            0.1,
            f"job {job_id} to reach {statuses}",
        )


@pytest.fixture
def client(stack, tenant) -> Client:
    """An HTTP client of the stack's API, for a fresh tenant."""
    return Client(stack.url(stack.procs_named("api")[0]), tenant[0])


@pytest.fixture
def gen_service(gen_service_port):
    """The external generation service, up on the run's private port, its breaker fresh;
    stopped (and its breaker forgotten) afterwards."""
    from app.generators import http as http_gen
    from tests.support.gen_service import GenService

    svc = GenService(gen_service_port).start()
    http_gen.reset_breaker(svc.host)
    yield svc
    svc.stop()
    http_gen.reset_breaker(svc.host)


def submit_http(client: Client, service, **fields) -> dict:
    """Submit an `http` job against the generation service (a POST, then polls)."""
    params = {"url": f"{service.url}/generate", "poll_url": f"{service.url}/status/{{id}}",
              "payload": {"prompt": "a lighthouse"}}
    return client.submit("http", params, **fields)

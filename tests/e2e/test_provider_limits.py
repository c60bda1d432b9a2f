"""Provider limits end to end: the HTTP API, two real workers, the system worker and beat,
and the real generation service. A host's shared rate holds across worker processes (its
window in Redis), and a `Retry-After` holds the job `queued` until the sweep sends it again,
no attempt spent (every job here has `max_retries=0`)."""

from __future__ import annotations

import pytest

from app import runs
from tests.e2e.conftest import Client, start_stack, submit_http

RATE = 3  # calls a second to the service, for every worker together


@pytest.fixture(scope="module")
def limited_stack(domain, gen_service_port):
    settings = domain.with_(http_host_rates=f"127.0.0.1:{gen_service_port}={RATE}/second")
    stack = start_stack(settings, workers=1, relays=0, io_workers=2)
    yield stack
    print(stack.logs())
    stack.stop()


@pytest.fixture
def client(limited_stack, tenant) -> Client:
    return Client(limited_stack.url(limited_stack.procs_named("api")[0]), tenant[0])


@pytest.fixture
def service(limited_stack, gen_service, no_host_limits):
    """The generation service, once this module's stack is up, and no hold or rate window
    left by the test before (the previous test's calls still fill the window)."""
    return gen_service


def submit(client: Client, service) -> dict:
    return submit_http(client, service, max_retries=0)


def test_two_workers_never_call_a_host_past_its_shared_rate(client, service):
    jobs = [submit(client, service) for _ in range(10)]
    for job in jobs:
        done = client.wait_status(job["id"], {"completed", "failed"}, timeout=90)
        assert done["status"] == "completed", done["error"]
    posts = sorted(service.stats()["generate_at"])
    assert len(posts) >= len(jobs)
    # Every window of one second holds at most RATE calls (the POSTs are some of them).
    assert max(sum(1 for t in posts if s <= t < s + 1.0) for s in posts) <= RATE


def test_retry_after_holds_the_job_queued_then_it_completes_on_its_one_attempt(client, service):
    service.control(fail_next=1, fail_status=429, retry_after=2)
    job = submit(client, service)
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed", done["error"]
    items = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    statuses = [e["payload"]["status"] for e in items if e["event_type"] == "job.status.updated"]
    assert statuses == ["queued", "processing", "queued", "processing", "completed"]
    held = next(e for e in items if e["payload"].get("error", {}).get("code") == runs.HELD)
    assert "Retry-After 2 s" in held["payload"]["error"]["message"]
    assert held["payload"]["run_after"] is not None


def test_the_shared_rate_holds_across_a_killed_worker(client, service, limited_stack):
    from tests.e2e.test_resilience import running_worker_pid

    jobs = [submit_http(client, service, max_retries=2) for _ in range(8)]
    client.wait_status(jobs[0]["id"], "processing", timeout=30)
    victim_pid = int(running_worker_pid(client, jobs[0]["id"]))
    victim = next(p for p in limited_stack.procs_named("io") if p.popen.pid == victim_pid)
    limited_stack.kill(victim)  # its calls stay counted in the window it shares with the rest
    limited_stack.start("io", IO_CONCURRENCY=50)
    for job in jobs:
        done = client.wait_status(job["id"], {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done["error"]
    items = client.get(f"/api/v1/jobs/{jobs[0]['id']}/events").json()["items"]
    lost = [e for e in items if e["payload"].get("error", {}).get("code") == "WORKER_LOST"]
    assert len(lost) == 1  # the killed attempt, then it ran again
    posts = sorted(service.stats()["generate_at"])
    assert max(sum(1 for t in posts if s <= t < s + 1.0) for s in posts) <= RATE

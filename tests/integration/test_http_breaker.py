"""The `http` generator against a real generation service in its own process.

Runs are executed in this process (`runs.execute`, as a worker would) on the real database and
Redis; the service is slow, flaky or down on demand. The breaker's state is in this run's Redis.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import select

from app import config, db, events, jobs, pubsub, runs
from app.generators import http as http_gen
from app.models import Event, Job
from tests.support.gen_service import GenService

FAIL_MAX, RESET_S = 3, 4.0


@pytest.fixture
def settings(domain):
    """A small breaker and a short read timeout for these tests."""
    settings = config.install(
        domain.with_(
            breaker_fail_max=FAIL_MAX, breaker_reset_timeout_s=RESET_S, http_read_timeout_s=0.5
        )
    )
    yield settings
    config.install(domain)


@pytest.fixture
def service(settings, gen_service_port):
    """The generation service, up, on the run's private port; stopped (and its breaker
    forgotten) afterwards."""
    svc = GenService(gen_service_port).start()
    http_gen.reset_breaker(svc.host)
    yield svc
    svc.stop()
    http_gen.reset_breaker(svc.host)


def submit(tenant, service, max_retries=10, **payload) -> str:
    params = {"url": f"{service.url}/generate", "poll_url": f"{service.url}/status/{{id}}",
              "payload": payload}
    job, _ = jobs.submit(tenant[1], {"kind": "http", "params": params,
                                     "max_retries": max_retries})
    return str(job.id)


def attempt(tenant, job_id: str, honour_backoff: bool = True) -> dict:
    """Run the job's next attempt here, as a worker would (after its backoff, if asked)."""
    with db.transaction() as conn:
        token, run_after = conn.execute(
            select(Job.dispatch_token, Job.run_after).where(Job.id == job_id)
        ).one()
    if honour_backoff and run_after is not None:
        time.sleep(max(0.0, (run_after - datetime.now(UTC)).total_seconds()))
    runs.execute(job_id, str(token), "test-worker")
    return jobs.get(tenant[1], job_id)


def breaker_changes(job_id: str) -> list[tuple[str, str]]:
    """The job's `circuit_breaker.state.changed` events, read from Postgres."""
    with db.transaction() as conn:
        rows = conn.execute(
            select(Event.payload)
            .where(Event.subject_id == job_id,
                   Event.event_type == events.CIRCUIT_BREAKER_STATE_CHANGED)
            .order_by(Event.seq)
        ).scalars()
        return [(p["previous_state"], p["current_state"]) for p in rows]


def breaker_state(service) -> str:
    key = f"{config.current().channel_prefix}:breaker:{service.host}:pybreaker:state"
    return (pubsub.client().get(key) or b"closed").decode()


def test_completes_after_polling(tenant, service):
    service.control(polls=2)
    job = attempt(tenant, submit(tenant, service, prompt="a cat"))
    assert job.status == "completed" and job.attempts == 1
    assert job.result_url.endswith(".png") and job.result["payload"] == {"prompt": "a cat"}
    assert service.calls() == {"generate": 1, "status": 3}
    kinds = [e["event_type"] for e in jobs.job_events(tenant[1], job.id)["items"]]
    assert kinds.count("job.progress.updated") == 2


def test_slow_service_times_out_and_the_retry_completes(tenant, service):
    service.control(slow_next=1, slow_s=3)
    job_id = submit(tenant, service)
    job = attempt(tenant, job_id)
    assert job.status == "retrying" and job.error["code"] == "TRANSIENT_ERROR"
    assert "Timeout" in job.error["message"]
    job = attempt(tenant, job_id)
    assert job.status == "completed" and job.attempts == 2
    # The first attempt's generation may exist (its answer was lost): the retry says it is
    # the same job, so the service can answer it instead of billing a second one.
    assert service.idempotency_keys() == [job_id, job_id]


def test_flaky_service_is_retried_until_it_completes(tenant, service):
    service.control(fail_next=FAIL_MAX - 1, fail_status=503)
    job_id = submit(tenant, service)
    for _ in range(FAIL_MAX - 1):
        assert attempt(tenant, job_id).status == "retrying"
    job = attempt(tenant, job_id)
    assert job.status == "completed" and job.attempts == FAIL_MAX
    assert breaker_changes(job_id) == [] and breaker_state(service) == "closed"
    assert service.idempotency_keys() == [job_id] * FAIL_MAX


def test_retries_stop_at_max_retries(tenant, service):
    service.control(fail_next=2, fail_status=500)
    job_id = submit(tenant, service, max_retries=1)
    assert attempt(tenant, job_id).status == "retrying"
    job = attempt(tenant, job_id)
    assert job.status == "failed" and job.error["code"] == "TRANSIENT_ERROR"
    assert "HTTP 500" in job.error["message"]


def test_down_service_opens_the_breaker_then_half_open_then_closed(tenant, service, http):
    service.stop()
    job_id = submit(tenant, service, max_retries=20)
    for _ in range(FAIL_MAX):
        job = attempt(tenant, job_id)
        assert job.status == "retrying" and job.error["code"] == "TRANSIENT_ERROR"
    assert breaker_changes(job_id) == [("closed", "open")]
    assert breaker_state(service) == "open"

    # Open: attempts fail fast, without calling the service (back up, but not asked).
    service.start()
    job = attempt(tenant, job_id, honour_backoff=False)
    assert "circuit open" in job.error["message"]
    assert service.calls()["generate"] == 0

    # After reset_timeout one trial call; the service is down again, so it opens again.
    service.stop()
    time.sleep(RESET_S + 0.2)
    assert attempt(tenant, job_id).status == "retrying"
    assert breaker_changes(job_id)[1:] == [("open", "half_open"), ("half_open", "open")]

    # Back, and after reset_timeout the trial call succeeds: closed, the job completes.
    service.start()
    time.sleep(RESET_S + 0.2)
    assert attempt(tenant, job_id).status == "completed"
    assert breaker_changes(job_id)[3:] == [("open", "half_open"), ("half_open", "closed")]
    assert breaker_state(service) == "closed"

    # The same events through the API, valid against the catalogue, with the job's seq.
    client, auth = http
    items = client.get(f"/api/v1/jobs/{job_id}/events", headers=auth).get_json()["items"]
    assert [e["seq"] for e in items] == list(range(1, len(items) + 1))
    changes = [e for e in items if e["event_type"] == events.CIRCUIT_BREAKER_STATE_CHANGED]
    assert len(changes) == 5
    validator = Draft202012Validator(events.EVENT_TYPES[events.CIRCUIT_BREAKER_STATE_CHANGED])
    for e in changes:
        validator.validate(e["payload"])
        assert e["payload"]["service_name"] == service.host and e["payload"]["job_id"] == job_id
    assert changes[0]["payload"]["failure_count"] == FAIL_MAX


def test_another_worker_shares_the_open_breaker_and_does_not_report_it_again(tenant, service):
    service.stop()
    tripper = submit(tenant, service, max_retries=20)
    for _ in range(FAIL_MAX):
        attempt(tenant, tripper)
    http_gen._breakers.clear()  # a fresh breaker object, as in another worker process
    service.start()
    other = attempt(tenant, submit(tenant, service))
    assert "circuit open" in other.error["message"]
    assert service.calls()["generate"] == 0
    assert breaker_changes(other.id) == [] and breaker_changes(tripper) == [("closed", "open")]


def test_4xx_is_permanent_and_leaves_the_breaker_closed(tenant, service):
    for _ in range(FAIL_MAX + 1):
        job = attempt(tenant, submit(tenant, service, reject=True))
        assert job.status == "failed" and job.attempts == 1
        assert job.error["code"] == "GENERATOR_ERROR" and "HTTP 422" in job.error["message"]
        assert breaker_changes(job.id) == []
    assert breaker_state(service) == "closed"
    assert attempt(tenant, submit(tenant, service)).status == "completed"


def test_the_same_move_made_by_two_workers_is_reported_once(settings, service):
    first = http_gen.breaker(service.host)
    http_gen._breakers.clear()
    second = http_gen.breaker(service.host)  # another worker's breaker on the same Redis state
    assert first is not second
    reported: list = []
    token = http_gen._changes.set(reported)
    try:
        first.open()
        second.open()  # a race both lost to the same failures: one event, not two
        first.close()
        second.close()
    finally:
        http_gen._changes.reset(token)
    assert [(p, c) for p, c, _ in reported] == [("closed", "open"), ("open", "closed")]

"""Provider limits: a service's `Retry-After` and a host's shared rate hold jobs in Postgres.

The `http` generator against the real generation service in its own process; runs executed
here as a worker would (`runs.execute`), the holds and rate windows in this run's Redis. A
held job waits `queued`, due again when its host has room, its attempt not spent: every job
here has `max_retries=0`, so a spent attempt would fail it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from app import config, runs
from app.config import Settings
from app.generators import http as http_gen
from tests.integration.test_http_breaker import attempt, service, settings, submit  # noqa: F401
from tests.integration.test_instant_runs import _statuses
from tests.integration.test_jobs_service import job_row


@pytest.fixture(autouse=True)
def _fresh_host_limits(no_host_limits):
    """Every test starts with no hold or rate window of another's."""


def _held_until(job_id: str) -> float:
    """Seconds from now until the held job is due."""
    return (job_row(job_id)["run_after"] - datetime.now(UTC)).total_seconds()


def test_a_429_with_retry_after_holds_the_job_queued_without_spending_an_attempt(
    tenant, service  # noqa: F811
):
    service.control(fail_next=1, fail_status=429, retry_after=1)
    job_id = submit(tenant, service, max_retries=0)
    job = attempt(tenant, job_id, honour_backoff=False)
    assert job.status == "queued"
    assert job.error["code"] == runs.HELD and "Retry-After 1 s" in job.error["message"]
    assert 0.5 < _held_until(job_id) <= 1.1
    statuses = _statuses(job_id)
    assert [s for _, _, s in statuses] == ["queued", "processing", "queued"]
    assert attempt(tenant, job_id).status == "completed"  # after its hold, on its one attempt
    row = job_row(job_id)
    assert row["attempts"] - row["retry_base"] == 1 and row["error"] is None


def test_a_held_host_holds_its_other_jobs_without_calling_it(tenant, service):  # noqa: F811
    service.control(fail_next=1, fail_status=503, retry_after=3)
    first = submit(tenant, service, max_retries=0)
    assert attempt(tenant, first, honour_backoff=False).status == "queued"
    calls = service.calls()["generate"]
    second = submit(tenant, service, max_retries=0)
    held = attempt(tenant, second, honour_backoff=False)
    assert held.status == "queued" and "asked to wait" in held.error["message"]
    assert service.calls()["generate"] == calls  # the host was not called
    assert 2.0 < _held_until(second) <= 3.1  # until the host's hold ends, not a fresh wait


def test_a_hosts_rate_is_shared_by_every_runner_and_never_exceeded(
    tenant, service, domain  # noqa: F811
):
    config.install(config.current().with_(http_host_rates=f"{service.host}=3/second"))
    jobs = [submit(tenant, service, max_retries=0) for _ in range(8)]
    before = len(service.stats()["generate_at"])

    def runner(mine: list[str]) -> None:  # a worker of its own: the window is in Redis
        deadline = time.monotonic() + 30
        while mine and time.monotonic() < deadline:
            for job_id in list(mine):
                if _held_until(job_id) > 0:
                    continue
                if attempt(tenant, job_id, False).status == "completed":
                    mine.remove(job_id)
            time.sleep(0.02)

    threads = [threading.Thread(target=runner, args=(jobs[i::2],)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    rows = [job_row(j) for j in jobs]
    assert [r["status"] for r in rows] == ["completed"] * 8, [r["error"] for r in rows]
    posts = sorted(service.stats()["generate_at"][before:])
    assert len(posts) >= 8
    # Every window of one second holds at most 3 calls (POSTs are some of them).
    assert max(sum(1 for t in posts if s <= t < s + 1.0) for s in posts) <= 3
    assert all(job_row(j)["attempts"] - job_row(j)["retry_base"] == 1 for j in jobs)


def test_a_job_held_longer_than_max_hold_fails_as_any_transient_failure(
    tenant, service, domain  # noqa: F811
):
    config.install(config.current().with_(http_max_hold_s=0.01))
    service.control(fail_next=1, fail_status=429, retry_after=1)
    job_id = submit(tenant, service, max_retries=0)
    time.sleep(0.02)
    job = attempt(tenant, job_id, honour_backoff=False)
    assert job.status == "failed" and job.error["code"] == runs.HELD


def test_retry_after_is_read_as_seconds_or_a_date_and_cut_to_its_bound(settings):  # noqa: F811
    now = datetime.now(UTC)
    in_30_s = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert http_gen.retry_after_s("120") == 120
    assert 28 <= http_gen.retry_after_s(in_30_s, now) <= 30
    assert http_gen.retry_after_s("99999999") == settings.http_max_retry_after_s
    assert http_gen.retry_after_s(format_datetime(now - timedelta(hours=1), usegmt=True)) == 0
    assert http_gen.retry_after_s("soon") is None and http_gen.retry_after_s(None) is None


@pytest.mark.parametrize("env", [
    {"HTTP_HOST_RATE": "lots"},
    {"HTTP_HOST_RATES": "api.example.com=5/second,other.example.com"},
    {"HTTP_HOST_RATES": "api.example.com=fast"},
])
def test_a_rate_that_is_not_one_is_refused_at_start(env):
    with pytest.raises(ValidationError):
        Settings(**{k.lower(): v for k, v in env.items()})


def test_per_host_rates_override_the_default():
    s = Settings(http_host_rate="10/second", http_host_rates="API.example.com=2/minute")
    assert s.host_rate("api.example.com") == "2/minute"
    assert s.host_rate("other.example.com") == "10/second"

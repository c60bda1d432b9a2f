"""The `chat` generator against the fake OpenAI-compatible server (its own process), run by
an embedded Celery worker on the real Postgres and Redis."""

from __future__ import annotations

import time

import pytest

from app import config, jobs
from app.events import JOB_OUTPUT_APPENDED
from app.generators import http as http_gen
from app.runs import HELD
from tests.integration.test_tasks import celery_app_worker  # noqa: F401
from tests.support.stack import wait_until

TERMINAL = ("completed", "failed", "cancelled")


def chat(fake_llm, **params) -> dict:
    return {"kind": "chat", "params": {
        "base_url": fake_llm.base_url, "model": "fake-1",
        "messages": [{"role": "user", "content": "Say twenty words."}], **params}}


def run_to_end(tenant, job_id, timeout: float = 30):
    """The job once it ended; admission passes go on meanwhile (no beat runs here to send a
    retry or a held job once it is due)."""
    return wait_until(lambda: (jobs.admit(), j := jobs.get(tenant[1], job_id))
                      and j.status in TERMINAL and j, timeout, 0.05, f"job {job_id} to end")


def output_of(tenant, job_id, attempt: int) -> str:
    items = jobs.job_events(tenant[1], job_id, 0, 1000)["items"]
    return "".join(e["payload"]["text"] for e in items if e["event_type"] == JOB_OUTPUT_APPENDED
                   and e["payload"]["attempt"] == attempt)


def statuses(tenant, job_id) -> list[str]:
    items = jobs.job_events(tenant[1], job_id, 0, 1000)["items"]
    return [e["payload"]["status"] for e in items if e["event_type"] == "job.status.updated"]


WHOLE = "".join(f"tok{i} " for i in range(20))


@pytest.fixture(autouse=True)
def fresh_host(fake_llm, domain):
    """No hold or breaker state of the server's host left by another test."""
    from app import pubsub

    pubsub.client().delete(http_gen._hold_key(f"127.0.0.1:{fake_llm.port}"))
    yield
    config.install(domain)


def test_a_reply_streams_as_output_and_is_the_results_text(celery_app_worker, tenant,  # noqa: F811
                                                            fake_llm):
    job, _ = jobs.submit(tenant[1], chat(fake_llm, temperature=0.2))
    done = run_to_end(tenant, job.id)
    assert done.status == "completed", done.error
    assert done.result["text"] == WHOLE and output_of(tenant, job.id, 1) == WHOLE
    assert done.result["usage"] == {"prompt_tokens": 7, "completion_tokens": 20,
                                    "total_tokens": 27}
    assert done.result["finish_reason"] == "stop" and done.result["model"] == "fake-1"
    assert done.result["time_to_first_token_s"] > 0 and done.result["tokens_per_s"] > 0
    call = fake_llm.stats()["calls"][-1]
    assert call["idempotency_key"] == str(job.id) and call["tokens_sent"] == 20


def test_retry_after_holds_the_job_without_spending_an_attempt(celery_app_worker, tenant,  # noqa: F811
                                                               fake_llm):
    fake_llm.control(fail_next=1, fail_status=429, retry_after="1")
    job, _ = jobs.submit(tenant[1], chat(fake_llm), )
    done = run_to_end(tenant, job.id)
    assert done.status == "completed" and done.result["text"] == WHOLE
    assert statuses(tenant, job.id) == ["queued", "processing", "queued", "processing",
                                        "completed"]
    held = [e for e in jobs.job_events(tenant[1], job.id, 0, 100)["items"]
            if (e["payload"].get("error") or {}).get("code") == HELD]
    assert held and "Retry-After 1 s" in held[0]["payload"]["error"]["message"]


@pytest.mark.parametrize(("status", "ends"), [(500, "completed"), (400, "failed")])
def test_5xx_is_retried_and_other_4xx_fail_for_good(celery_app_worker, tenant, fake_llm,  # noqa: F811
                                                    status, ends):
    fake_llm.control(fail_next=1, fail_status=status)
    job, _ = jobs.submit(tenant[1], {**chat(fake_llm), "max_retries": 2})
    done = run_to_end(tenant, job.id)
    assert done.status == ends
    if ends == "failed":
        assert done.attempts == 1 and "HTTP 400" in done.error["message"]
    else:
        assert statuses(tenant, job.id)[2] == "retrying" and done.result["text"] == WHOLE


@pytest.mark.parametrize("fault", ["cut_after", "error_after"])
def test_a_stream_cut_midway_is_retried_and_the_new_attempt_streams_afresh(
    celery_app_worker, tenant, fake_llm, fault  # noqa: F811
):
    fake_llm.control(**{fault: 5})
    job, _ = jobs.submit(tenant[1], {**chat(fake_llm), "max_retries": 1})
    wait_until(lambda: statuses(tenant, job.id)[-1] == "retrying", 20, 0.05, "a retry")
    fake_llm.control(**{fault: None})
    done = run_to_end(tenant, job.id)
    assert done.status == "completed" and done.attempts == 2
    assert output_of(tenant, job.id, 1) == WHOLE[: len("tok0 tok1 tok2 tok3 tok4 ")]
    assert output_of(tenant, job.id, 2) == WHOLE == done.result["text"]


def test_cancel_closes_a_stalled_upstream_stream_within_a_second(celery_app_worker, tenant,  # noqa: F811
                                                                 fake_llm):
    fake_llm.control(stall_after=3)
    job, _ = jobs.submit(tenant[1], chat(fake_llm))
    wait_until(lambda: output_of(tenant, job.id, 1) == "tok0 tok1 tok2 ", 20, 0.05,
               "three tokens")
    cancelled_at = time.time()
    jobs.cancel(tenant[1], job.id)
    done = run_to_end(tenant, job.id, timeout=10)
    assert done.status == "cancelled"
    closed_at = wait_until(lambda: fake_llm.stats()["calls"][-1]["closed_at"], 5, 0.05,
                           "the server to see the connection closed")
    assert closed_at - cancelled_at < 1.0 + 0.25  # CANCEL_CHECK_S and PROGRESS_MIN_INTERVAL_S


def test_a_stall_past_the_read_timeout_is_a_transient_failure(celery_app_worker, tenant,  # noqa: F811
                                                              fake_llm, domain):
    config.install(domain.with_(http_read_timeout_s=1.0))
    fake_llm.control(stall_after=2)
    job, _ = jobs.submit(tenant[1], {**chat(fake_llm), "max_retries": 0})
    done = run_to_end(tenant, job.id)
    assert done.status == "failed" and done.error["code"] == "TRANSIENT_ERROR"
    assert "stream broke" in done.error["message"]


def test_a_server_outside_the_allowed_hosts_is_never_called(celery_app_worker, tenant,  # noqa: F811
                                                            fake_llm):
    from scripts.sandbox import free_port

    params = chat(fake_llm)
    params["params"]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"  # loopback, not listed
    job, _ = jobs.submit(tenant[1], params)
    done = run_to_end(tenant, job.id)
    assert done.status == "failed" and done.error["code"] == "ADDRESS_NOT_ALLOWED"


@pytest.mark.parametrize("bad", [
    {"messages": []},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"temperature": 3},
    {"base_url": "ftp://llm/v1"},
    {"model": ""},
    {"stream": False},
])
def test_bad_params_are_refused_field_by_field(http, fake_llm, bad):
    client, headers = http
    body = chat(fake_llm)
    body["params"].update(bad)
    resp = client.post("/api/v1/jobs", json=body, headers=headers)
    assert resp.status_code == 422, resp.get_json()
    assert any(f.startswith("params") for f in resp.get_json()["error"]["details"])

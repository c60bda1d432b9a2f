"""Streamed output through a real run: an embedded Celery worker, the real Postgres and
Redis; the chunks as events (stored and published), and `GET /api/v1/jobs/{id}/output`."""

from __future__ import annotations

import time

import pytest

from app import config, generators, jobs
from app.events import JOB_OUTPUT_APPENDED
from app.generators import Output, TransientError
from app.generators import base as generator_base
from tests.integration.test_tasks import celery_app_worker, wait_ended  # noqa: F401
from tests.support.stack import wait_until

TOKENS = [f"tok{i} " for i in range(40)]


class Streamer:
    """Appends `tokens` one by one `delay_s` apart (and `deltas`); fails transiently after
    streaming on its first `fail_first` attempts; waits `hold_s` at the end."""

    name = "streamer"
    params_schema = {"type": "object"}

    def run(self, params: dict, ctx) -> Output:
        for token in params.get("tokens", TOKENS):
            ctx.append(token)
            time.sleep(params.get("delay_s", 0.005))
        for delta in params.get("deltas", []):
            ctx.append_delta(delta)
        end = time.monotonic() + params.get("hold_s", 0)
        while time.monotonic() < end:
            ctx.check_cancelled()
            time.sleep(0.02)
        if ctx.attempt <= params.get("fail_first", 0):
            raise TransientError("the stream was cut")
        return Output(result={"attempt": ctx.attempt})


@pytest.fixture
def streamer(domain):
    generators.register(Streamer())
    config.install(domain.with_(retry_backoff_base_s=0.05, retry_backoff_max_s=0.1))
    yield
    config.install(domain)
    generator_base._registry.pop("streamer", None)
    generator_base._validators.pop("streamer", None)


def chunk_events(tenant, job_id) -> list[dict]:
    return jobs.job_events(tenant[1], job_id, 0, 1000)["items"]


def get(http, path: str):
    client, headers = http
    return client.get(path, headers=headers)


def test_output_arrives_as_ordered_chunks_before_the_outcome_and_reads_back_whole(
    celery_app_worker, streamer, tenant, http  # noqa: F811
):
    job, _ = jobs.submit(tenant[1], {"kind": "streamer", "params": {"deltas": [{"k": 1}]}})
    done = wait_ended(tenant, job.id)
    assert done.status == "completed"
    items = chunk_events(tenant, job.id)
    chunks = [e["payload"] for e in items if e["event_type"] == JOB_OUTPUT_APPENDED]
    assert 2 <= len(chunks) < len(TOKENS)  # coalesced, not one event per token
    offset = 0
    for chunk in chunks:
        assert chunk["attempt"] == 1 and chunk["offset"] == offset
        offset += len(chunk["text"])
    assert "".join(c["text"] for c in chunks) == "".join(TOKENS)
    types = [e["event_type"] for e in items]
    last_chunk = max(i for i, t in enumerate(types) if t == JOB_OUTPUT_APPENDED)
    assert items[-1]["payload"]["status"] == "completed" and last_chunk < len(items) - 1

    whole = get(http, f"/api/v1/jobs/{job.id}/output")
    assert whole.status_code == 200
    body = whole.get_json()
    assert body["text"] == "".join(TOKENS) and body["done"] is True and body["attempt"] == 1
    assert body["deltas"] == [{"k": 1}] and body["delta_offset"] == 1
    rest = get(http, f"/api/v1/jobs/{job.id}/output?offset=10&delta_offset=1").get_json()
    assert rest["text"] == "".join(TOKENS)[10:] and rest["offset"] == len("".join(TOKENS))
    assert rest["deltas"] == []


def test_a_retried_attempt_streams_its_own_output_from_offset_zero(
    celery_app_worker, streamer, tenant, http  # noqa: F811
):
    job, _ = jobs.submit(tenant[1], {"kind": "streamer", "params": {"fail_first": 1},
                                     "max_retries": 2})
    # No beat here: admission passes (the beat's, every sweep) send the retry once it is due.
    done = wait_until(lambda: (jobs.admit(), j := jobs.get(tenant[1], job.id))
                      and j.status in ("completed", "failed") and j, 30, 0.05, "the retry")
    assert done.status == "completed" and done.attempts == 2
    chunks = [e["payload"] for e in chunk_events(tenant, job.id)
              if e["event_type"] == JOB_OUTPUT_APPENDED]
    for attempt in (1, 2):
        mine = [c for c in chunks if c["attempt"] == attempt]
        assert mine[0]["offset"] == 0
        assert "".join(c["text"] for c in mine) == "".join(TOKENS)
    body = get(http, f"/api/v1/jobs/{job.id}/output").get_json()
    assert body["attempt"] == 2 and body["text"] == "".join(TOKENS)  # never the two mixed


def test_cancel_mid_stream_keeps_what_was_streamed_and_ends_cancelled(
    celery_app_worker, streamer, tenant  # noqa: F811
):
    job, _ = jobs.submit(tenant[1], {"kind": "streamer", "params": {"hold_s": 30,
                                                                    "delay_s": 0.02}})
    wait_until(lambda: any(e["event_type"] == JOB_OUTPUT_APPENDED
                           for e in chunk_events(tenant, job.id)), 10, 0.05, "a chunk")
    jobs.cancel(tenant[1], job.id)
    done = wait_ended(tenant, job.id, timeout=10)
    assert done.status == "cancelled"
    items = chunk_events(tenant, job.id)
    text = "".join(e["payload"]["text"] for e in items if e["event_type"] == JOB_OUTPUT_APPENDED)
    # What was appended up to the cancel, whole (the chunk pending then is written with the
    # cancel), and nothing after it.
    assert text and "".join(TOKENS).startswith(text) and text.endswith(" ")
    assert items[-1]["payload"]["status"] == "cancelled"


def test_another_tenants_job_output_is_not_found(http, other_tenant):
    job, _ = jobs.submit(other_tenant[1], {"kind": "echo", "params": {}})
    assert get(http, f"/api/v1/jobs/{job.id}/output").status_code == 404
    bad = get(http, f"/api/v1/jobs/{job.id}/output?offset=-1")
    assert bad.status_code == 422 and "offset" in bad.get_json()["error"]["details"]


def test_a_round_stores_only_the_chunks_whose_run_owns_its_uncancelled_job(tenant):
    """One statement for a round: each owned job takes its next seq; a cancelled job and one
    given to another run take nothing, and are named as refused."""
    import uuid

    from sqlalchemy import update

    from app import db, output
    from app.models import Job

    made = [jobs.submit(tenant[1], {"kind": "sleep", "params": {"seconds": 1}})[0].id
            for _ in range(3)]
    run_ids = {job_id: uuid.uuid4() for job_id in made}
    with db.transaction() as conn:
        for job_id, run_id in run_ids.items():
            conn.execute(update(Job).where(Job.id == job_id)
                         .values(status="processing", run_id=run_id))
        conn.execute(update(Job).where(Job.id == made[1]).values(cancel_requested=True))
    before = {j: max(e["seq"] for e in chunk_events(tenant, j)) for j in made}
    chunks = [(str(j), run_ids[j] if j != made[2] else uuid.uuid4(),
               {"job_id": str(j), "attempt": 1, "offset": 0, "text": "hello"}) for j in made]
    envelopes, refused = output.store_round(chunks)
    assert refused == {str(made[1]), str(made[2])}
    assert [(e["subject"]["id"], e["seq"]) for e in envelopes] == [(str(made[0]),
                                                                     before[made[0]] + 1)]
    stored = chunk_events(tenant, made[0])[-1]
    assert stored["event_type"] == JOB_OUTPUT_APPENDED and stored["payload"]["text"] == "hello"
    assert stored["metadata"]["tenant"] == tenant[1].name
    assert all(chunk_events(tenant, j)[-1]["seq"] == before[j] for j in made[1:])

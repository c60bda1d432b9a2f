"""The job service and the outbox on the real Postgres and Redis (no worker processes)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app import db, jobs, outbox, pubsub, runs, sweeps
from app.events import Subject
from app.generators import Output
from app.models import Event, Job, JobStatus
from app.outbox import names, publish, sweep, unit_of_work
from app.scheduling import admission

ECHO = {"kind": "echo", "params": {"hello": "world"}}


def job_row(job_id) -> dict:
    with db.transaction() as conn:
        return dict(conn.execute(select(Job.__table__).where(Job.id == job_id)).mappings().one())


def event_rows(job_id) -> list[dict]:
    with db.transaction() as conn:
        q = select(Event.__table__).where(Event.subject_id == job_id).order_by(Event.seq)
        return [dict(r) for r in conn.execute(q).mappings()]


def test_submit_records_its_event_and_publishes_it_after_commit(tenant, listener):
    job, created = jobs.submit(tenant[1], ECHO)
    assert created and job.status is JobStatus.QUEUED
    outbox.flush_marks()
    rows = event_rows(job.id)
    assert [(r["seq"], r["payload"]["status"]) for r in rows] == [(1, "queued")]
    assert rows[0]["published_at"] is not None
    published = [e for e in listener.drain() if e["subject"]["id"] == str(job.id)]
    assert len(published) == 1
    env = published[0]
    assert env["event_type"] == "job.status.updated" and env["seq"] == 1
    assert env["metadata"]["tenant"] == tenant[1].name
    assert env["timestamp"].endswith("Z")
    assert job_row(job.id)["dispatched_at"] is not None


def test_idempotency_key_returns_the_original_job_even_under_concurrency(tenant):
    key = f"key-{uuid.uuid4()}"
    results = []

    def submit():
        results.append(jobs.submit(tenant[1], ECHO, idempotency_key=key))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(event_rows(results[0][0].id)) == 1


def test_keyset_pagination_is_stable_newest_first(tenant):
    made = [jobs.submit(tenant[1], {"kind": "echo", "params": {"i": i}})[0].id for i in range(7)]
    jobs.submit(tenant[1], {"kind": "sleep", "params": {"seconds": 0}})
    seen, cursor = [], None
    while True:
        items, cursor = jobs.list_jobs(tenant[1], {"kind": "echo"}, limit=3, cursor=cursor)
        seen += [j.id for j in items]
        if cursor is None:
            break
    assert seen == list(reversed(made))


def test_seq_is_gapless_under_concurrent_writers(tenant):
    job, _ = jobs.submit(tenant[1], ECHO)
    subject = Subject("job", job.id, tenant[1].id, tenant[1].name)

    def write(n):
        for _ in range(n):
            with unit_of_work("test") as uow:
                uow.record(subject, "job.progress.updated", {"job_id": str(job.id), "progress": 0})

    threads = [threading.Thread(target=write, args=(10,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["seq"] for r in event_rows(job.id)] == list(range(1, 82))


def test_events_left_unpublished_when_redis_is_down_are_published_by_the_sweep(
    domain, tenant, listener
):
    pubsub.init("redis://127.0.0.1:1/0", domain.channel_prefix, 0.5)  # nothing listens there
    try:
        job, created = jobs.submit(tenant[1], ECHO)
        assert created
    finally:
        pubsub.init(domain.redis_url, domain.channel_prefix, domain.dependency_timeout_s)
    assert event_rows(job.id)[0]["published_at"] is None
    time.sleep(domain.outbox_grace_s + 0.1)
    assert publish.publish_pending(domain.outbox_grace_s) >= 1
    assert event_rows(job.id)[0]["published_at"] is not None
    assert [e["seq"] for e in listener.drain() if e["subject"]["id"] == str(job.id)] == [1]


def test_jobs_the_broker_refused_are_dispatched_by_the_sweep(domain, tenant):
    from workers import make_celery

    dead = make_celery(domain.with_(redis_url="redis://127.0.0.1:1/0"))
    outbox.configure(dead.send_task)
    try:
        job, _ = jobs.submit(tenant[1], ECHO)
        assert admission.settle()  # its pass (this process's admitter) sent it to the dead one
    finally:
        outbox.configure(make_celery(domain).send_task)
    assert job_row(job.id)["dispatched_at"] is None
    time.sleep(domain.outbox_grace_s + 0.1)
    assert sweep.dispatch_due(jobs.JOB_RUN) >= 1
    assert job_row(job.id)["dispatched_at"] is not None


def run_now(job_id) -> str | None:
    row = job_row(job_id)
    return runs.execute(str(job_id), str(row["dispatch_token"]), "test-worker")


def test_a_duplicate_message_never_moves_a_terminal_job(tenant):
    job, _ = jobs.submit(tenant[1], ECHO)
    token = str(job_row(job.id)["dispatch_token"])
    assert runs.execute(job.id, token, "w1") == "completed"
    outbox.flush_marks()  # the outbox marks are written in batches: settle them first
    before, before_events = job_row(job.id), event_rows(job.id)
    assert runs.execute(job.id, token, "w2") is None
    outbox.flush_marks()
    assert job_row(job.id) == before and event_rows(job.id) == before_events


def test_a_stale_token_cannot_claim_a_retrying_job(tenant):
    job, _ = jobs.submit(tenant[1], {"kind": "fail", "params": {"message": "m", "transient": True}})
    old_token = str(job_row(job.id)["dispatch_token"])
    assert runs.execute(job.id, old_token, "w1") == "retrying"
    row = job_row(job.id)
    assert row["status"] == "retrying" and str(row["dispatch_token"]) != old_token
    assert row["run_after"] > datetime.now(UTC) - timedelta(seconds=1)
    assert runs.execute(job.id, old_token, "w1") is None
    assert job_row(job.id)["attempts"] == 1


def test_orphan_sweep_gives_the_job_away_and_the_old_run_cannot_finish_it(domain, tenant):
    job, _ = jobs.submit(tenant[1], ECHO)
    run = runs.claim(job.id, str(job_row(job.id)["dispatch_token"]), "doomed", instant=False)
    stale = datetime.now(UTC) - timedelta(seconds=domain.worker_lost_redelivery_s)
    with db.transaction() as conn:
        conn.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=stale))
    assert sweeps.reap_orphans() == 1
    row = job_row(job.id)
    assert row["status"] == "retrying" and row["error"]["code"] == "WORKER_LOST"
    with pytest.raises(runs.Superseded):
        runs.complete(run, Output(result={"late": True}), None)
    assert job_row(job.id)["status"] == "retrying"
    assert run_now(job.id) == "completed"
    assert job_row(job.id)["attempts"] == 2


def test_timeout_sweep_fails_a_run_past_its_timeout(tenant):
    job, _ = jobs.submit(tenant[1], {**ECHO, "timeout_s": 1})
    runs.claim(job.id, str(job_row(job.id)["dispatch_token"]), "stuck", instant=False)
    long_ago = datetime.now(UTC) - timedelta(seconds=60)
    with db.transaction() as conn:
        conn.execute(update(Job).where(Job.id == job.id).values(attempt_started_at=long_ago))
    assert sweeps.reap_timeouts() >= 1
    row = job_row(job.id)
    assert row["status"] == "failed" and row["error"]["code"] == "TIMEOUT"


def test_lost_broker_data_marks_waiting_jobs_for_redispatch(domain, tenant):
    import redis

    broker = redis.Redis.from_url(domain.redis_url)
    sweep.redispatch_if_broker_lost(broker)  # sets the marker
    job, _ = jobs.submit(tenant[1], {**ECHO, "countdown_s": 0})
    assert admission.settle()
    outbox.flush_marks()
    assert job_row(job.id)["dispatched_at"] is not None
    assert sweep.redispatch_if_broker_lost(broker) == 0
    broker.delete(f"{domain.channel_prefix}:broker-epoch")  # what a restart without disk does
    assert sweep.redispatch_if_broker_lost(broker) >= 1
    assert job_row(job.id)["dispatched_at"] is None


def test_cancel_and_retry_follow_the_state_machine(tenant):
    from app.errors import InvalidTransition

    job, _ = jobs.submit(tenant[1], {**ECHO, "countdown_s": 60})
    assert jobs.cancel(tenant[1], job.id).status == "cancelled"
    with pytest.raises(InvalidTransition):
        jobs.cancel(tenant[1], job.id)
    again = jobs.retry(tenant[1], job.id)
    assert again.status == "queued" and again.finished_at is None
    assert [r["payload"]["status"] for r in event_rows(job.id)] == [
        "queued", "cancelled", "queued",
    ]
    later = jobs.job_events(tenant[1], job.id, since=2)["items"]
    assert later[0]["payload"]["status"] == "queued"


def test_every_recorded_event_matches_its_published_schema(http):
    """All events this run has written so far validate against `/api/v1/event-types`."""
    from jsonschema import Draft202012Validator

    client, auth = http
    types = client.get("/api/v1/event-types", headers=auth).get_json()["items"]
    validators = {t["event_type"]: Draft202012Validator(t["schema"]) for t in types}
    jobs_made = [client.post("/api/v1/jobs", json={"kind": "echo", "params": {"n": i}},
                             headers=auth).get_json()["id"] for i in range(2)]
    run_now(jobs_made[0])
    with db.transaction() as conn:
        rows = conn.execute(select(Event.event_type, Event.payload)).all()
    assert len(rows) >= 3
    for event_type, payload in rows:
        errors = list(validators[event_type].iter_errors(payload))
        assert not errors, (event_type, payload, errors[0].message)


def test_a_message_the_broker_lost_is_sent_again_one_it_holds_is_not(domain, tenant):
    """Kombu can lose a message a worker was SIGKILLed holding: the sweep resends it."""
    import redis

    from workers import make_celery

    broker = redis.Redis.from_url(domain.redis_url)
    jobs_queue = names.JOBS_QUEUE
    broker.delete(jobs_queue, *[f"{jobs_queue}:{p}" for p in range(1, 10)], "unacked")
    held, _ = jobs.submit(tenant[1], ECHO)  # really on the broker (no worker runs here)
    assert admission.settle()
    outbox.configure(lambda *a, **kw: None)  # a broker that says yes and keeps nothing
    try:
        lost, _ = jobs.submit(tenant[1], ECHO)
        assert admission.settle()
    finally:
        outbox.configure(make_celery(domain).send_task)
    outbox.flush_marks()
    with db.transaction() as conn:  # both were sent long ago
        conn.execute(
            update(Job)
            .where(Job.id.in_([held.id, lost.id]))
            .values(dispatched_at=datetime.now(UTC) - timedelta(hours=1))
        )
    before = {j.id: job_row(j.id)["dispatch_token"] for j in (held, lost)}
    broker.delete(f"{domain.channel_prefix}:lost-check")
    assert sweep.redispatch_lost_messages(broker) >= 1
    assert job_row(lost.id)["dispatched_at"] is None
    assert job_row(lost.id)["dispatch_token"] != before[lost.id]
    assert job_row(held.id)["dispatch_token"] == before[held.id]  # the broker holds it
    assert sweep.redispatch_lost_messages(broker) == 0  # throttled until the next period

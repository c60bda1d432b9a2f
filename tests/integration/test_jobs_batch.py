"""POST /api/v1/jobs/batch on the real Postgres and Redis, the app in-process."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select

from app import db, outbox
from app.models import Event, Job
from app.outbox import broker
from app.scheduling import limits
from tests.integration.conftest import row_counts
from tests.support.stack import wait_until

BATCH = "/api/v1/jobs/batch"


@pytest.fixture
def celery(domain):
    """The outbox's seam as the API wires it (other tests put in brokers of their own)."""
    from workers import make_celery
    from workers.transport import batch_sender

    app = make_celery(domain)
    outbox.configure(app.send_task, batch_sender(app))
    yield app
    outbox.configure(app.send_task, batch_sender(app))


def echo(i: int, **fields) -> dict:
    return {"kind": "echo", "params": {"i": i}, **fields}


def jobs_of(ids) -> dict[str, dict]:
    with db.transaction() as conn:
        q = select(Job.__table__).where(Job.id.in_([uuid.UUID(i) for i in ids]))
        return {str(r["id"]): dict(r) for r in conn.execute(q).mappings()}


def first_events(ids) -> list[dict]:
    with db.transaction() as conn:
        q = select(Event.__table__).where(Event.subject_id.in_([uuid.UUID(i) for i in ids]))
        return [dict(r) for r in conn.execute(q).mappings()]


def test_a_thousand_jobs_are_made_in_order_with_their_events_published_and_sent(
    http, celery, listener, domain, tenant
):
    client, auth = http
    # All of them admitted at once (the default limit would hold 900 back in Postgres).
    limits.set_tenant_limits(tenant[1].name, {"max_running": 1000})
    body = {"jobs": [echo(i, card_id=f"c{i % 7}") for i in range(1000)]}
    resp = client.post(BATCH, json=body, headers=auth)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    items = resp.json["items"]
    assert resp.json["replayed"] == []
    assert [j["params"]["i"] for j in items] == list(range(1000))
    assert {j["status"] for j in items} == {"queued"}
    ids = [j["id"] for j in items]
    assert len(set(ids)) == 1000
    rows = jobs_of(ids)
    assert len(rows) == 1000
    assert {rows[i]["card_id"] for i in ids} == {f"c{k}" for k in range(7)}
    # One request, one correlation id for every job and event it made.
    assert len({j["correlation_id"] for j in items}) == 1
    evs = first_events(ids)
    assert sorted(str(e["subject_id"]) for e in evs) == sorted(ids)
    assert {(e["seq"], e["event_type"], e["payload"]["status"]) for e in evs} == {
        (1, "job.status.updated", "queued")
    }
    published = [e for e in listener.drain(2.0) if e["subject"]["id"] in set(ids)]
    assert sorted(e["subject"]["id"] for e in published) == sorted(ids)
    assert {e["seq"] for e in published} == {1}
    # Every message is on the broker (admitted together), and only then marked dispatched.
    held = broker.held_row_ids(redis.Redis.from_url(domain.redis_url), ["jobs"])
    assert set(ids) <= held
    outbox.flush_marks()
    assert all(r["dispatched_at"] is not None for r in jobs_of(ids).values())
    assert all(e["published_at"] is not None for e in first_events(ids))


def test_one_bad_item_refuses_the_batch_by_its_index_and_writes_nothing(http, celery):
    client, auth = http
    before = row_counts()
    body = {"jobs": [
        echo(0),
        {"kind": "sleep", "params": {"seconds": -1}},
        echo(2, priority=12),
        echo(3, timeout_s=10**9),
        {"kind": "paint"},
        echo(5),
    ]}
    resp = client.post(BATCH, json=body, headers=auth)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    details = resp.json["error"]["details"]
    # The schema's refusal comes first: the out-of-range priority, named by its index.
    assert details == {
        "jobs.2.priority": ["Must be greater than or equal to 0 and less than or equal to 9."]
    }
    del body["jobs"][2]
    resp = client.post(BATCH, json=body, headers=auth)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    details = resp.json["error"]["details"]
    assert set(details) == {"jobs.1.params.seconds", "jobs.2.timeout_s", "jobs.3.kind"}
    assert resp.json["error"]["message"] == "3 of 5 jobs refused; none made"
    assert row_counts() == before


def test_a_key_given_twice_in_a_batch_is_refused(http, celery):
    client, auth = http
    before = row_counts()
    body = {"jobs": [echo(0, idempotency_key="a"), echo(1, idempotency_key="b"),
                     echo(2, idempotency_key="a")]}
    resp = client.post(BATCH, json=body, headers=auth)
    assert resp.status_code == 422
    assert resp.json["error"]["details"] == {
        "jobs.2.idempotency_key": ["used twice in this batch (item 0 has it too)"]
    }
    assert row_counts() == before


def test_a_key_used_before_answers_the_earlier_job(http, celery):
    client, auth = http
    key = f"k-{uuid.uuid4().hex}"
    single = client.post("/api/v1/jobs", json=echo(-1), headers={**auth, "Idempotency-Key": key})
    assert single.status_code == 202
    first = client.post(BATCH, json={"jobs": [echo(0), echo(1, idempotency_key=key),
                                              echo(2, idempotency_key=key + "-2")]}, headers=auth)
    assert first.status_code == 202, first.get_data(as_text=True)
    assert first.json["replayed"] == [1]
    items = first.json["items"]
    assert items[1]["id"] == single.json["id"] and items[1]["params"] == {"i": -1}
    # The same batch again: the keyed items are the jobs it made, the unkeyed one is new.
    again = client.post(BATCH, json={"jobs": [echo(0), echo(1, idempotency_key=key),
                                              echo(2, idempotency_key=key + "-2")]}, headers=auth)
    assert again.json["replayed"] == [1, 2]
    assert [j["id"] for j in again.json["items"][1:]] == [j["id"] for j in items[1:]]
    assert again.json["items"][0]["id"] != items[0]["id"]
    # A replayed job has no second first event.
    assert [e["seq"] for e in first_events([items[2]["id"]])] == [1]


def test_keys_are_per_tenant(http, celery, other_tenant):
    client, auth = http
    key = f"k-{uuid.uuid4().hex}"
    mine = client.post(BATCH, json={"jobs": [echo(0, idempotency_key=key)]}, headers=auth)
    theirs = client.post(BATCH, json={"jobs": [echo(0, idempotency_key=key)]},
                         headers={"Authorization": f"Bearer {other_tenant[0]}"})
    assert mine.json["replayed"] == theirs.json["replayed"] == []
    assert mine.json["items"][0]["id"] != theirs.json["items"][0]["id"]


def test_concurrent_batches_with_the_same_keys_make_each_job_once(flask_app, tenant, celery):
    auth = {"Authorization": f"Bearer {tenant[0]}"}
    keys = [f"k-{uuid.uuid4().hex}" for _ in range(50)]
    answers, barrier = [], threading.Barrier(4)

    def post(order):
        body = {"jobs": [echo(i, idempotency_key=k) for i, k in order]}
        barrier.wait()
        answers.append(flask_app.test_client().post(BATCH, json=body, headers=auth))

    forward = list(enumerate(keys))
    orders = [forward, forward[::-1], forward[::2] + forward[1::2], forward]
    threads = [threading.Thread(target=post, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 4, [a.get_data(as_text=True)
                                                          for a in answers]
    by_key = {}
    for a in answers:
        for job in a.json["items"]:
            by_key.setdefault(job["params"]["i"], set()).add(job["id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sum(len(a.json["items"]) - len(a.json["replayed"]) for a in answers) == 50
    with db.transaction() as conn:
        made = conn.execute(
            select(func.count()).select_from(Job).where(Job.idempotency_key.in_(keys))
        ).scalar_one()
    assert made == 50


@pytest.mark.parametrize(
    "body, field",
    [
        ({"jobs": [echo(i) for i in range(1001)]}, "jobs"),
        ({"jobs": []}, "jobs"),
        ({}, "jobs"),
        ({"jobs": [echo(0, idempotency_key="has space")]}, "jobs.0.idempotency_key"),
        ({"jobs": [echo(0, color="red")]}, "jobs.0.color"),
        ({"jobs": [echo(0)], "extra": 1}, "extra"),
    ],
)
def test_bad_batches_are_refused_field_by_field(http, celery, body, field):
    client, auth = http
    before = row_counts()
    resp = client.post(BATCH, json=body, headers=auth)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert list(resp.json["error"]["details"]) == [field]
    assert row_counts() == before


def test_a_body_over_the_limit_is_413(http, celery, domain):
    client, auth = http
    before = row_counts()
    big = {"jobs": [echo(0, card_id="x" * 255) for _ in range(domain.max_body_bytes // 255)]}
    resp = client.post(BATCH, json=big, headers=auth)
    assert resp.status_code == 413
    assert resp.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert row_counts() == before


def test_a_reader_key_may_not_submit_a_batch(http, celery):
    from app import tenants

    client, _ = http
    reader = tenants.create_key(f"r-{uuid.uuid4().hex[:8]}", ["jobs:read"])
    resp = client.post(BATCH, json={"jobs": [echo(0)]},
                       headers={"Authorization": f"Bearer {reader}"})
    assert resp.status_code == 403


def test_a_broker_that_refuses_leaves_the_batch_to_the_sweep(http, domain, celery):
    from app.jobs import JOB_RUN
    from app.outbox import sweep
    from workers import make_celery
    from workers.transport import batch_sender

    client, auth = http
    dead = make_celery(domain.with_(redis_url="redis://127.0.0.1:1/0"))
    outbox.configure(dead.send_task, batch_sender(dead))
    try:
        resp = client.post(BATCH, json={"jobs": [echo(i) for i in range(20)]}, headers=auth)
    finally:
        outbox.configure(celery.send_task, batch_sender(celery))
    assert resp.status_code == 202
    ids = [j["id"] for j in resp.json["items"]]
    outbox.flush_marks()
    assert all(r["dispatched_at"] is None for r in jobs_of(ids).values())
    wait_until(lambda: sweep.dispatch_due(JOB_RUN) >= 0 and all(
        r["dispatched_at"] is not None for r in jobs_of(ids).values()), 20, 0.3,
        "the sweep to send the batch")


def test_every_job_of_a_batch_runs(http, celery, domain):
    client, auth = http
    resp = client.post(BATCH, json={"jobs": [echo(i) for i in range(200)]}, headers=auth)
    assert resp.status_code == 202
    ids = [j["id"] for j in resp.json["items"]]
    with start_worker(celery, pool="threads", concurrency=4, perform_ping_check=False,
                      queues=("jobs",), shutdown_timeout=30):
        wait_until(lambda: {r["status"] for r in jobs_of(ids).values()} == {"completed"},
                   90, 0.2, "200 jobs of a batch to complete")
    assert sorted(r["result"]["i"] for r in jobs_of(ids).values()) == list(range(200))

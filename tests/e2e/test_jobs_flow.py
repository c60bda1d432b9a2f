"""A job's whole path through real processes: HTTP -> Celery -> Postgres -> Redis -> Socket.IO."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Client
from tests.support.marker import send_marker
from tests.support.sio import EventClient
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


def seqs(events: list[dict]) -> list[int]:
    return [e["seq"] for e in events]


def relay_urls(stack) -> list[str]:
    return [stack.url(p) for p in stack.procs_named("relay")]


def test_sleep_job_followed_live_to_completed_on_two_relays(stack, client):
    """Both relays deliver every event of a sleep job, in order, no gap, no duplicate."""
    job = client.submit("sleep", {"seconds": 1.5, "steps": 3})
    watchers = [EventClient(url, client.secret) for url in relay_urls(stack)]
    try:
        for w in watchers:
            assert w.subscribe(f"job:{job['id']}", since=0) == {"ok": True}
        for w in watchers:
            w.wait_for_status(job["id"], "completed", timeout=30)
        # Anything after the terminal event would be a defect: it would arrive before this.
        send_marker(client, watchers, [job["id"]])
        for w in watchers:
            events = w.of(job["id"])
            assert seqs(events) == list(range(1, len(events) + 1))
            statuses = [e["payload"]["status"] for e in events if "status" in e["payload"]]
            assert statuses == ["queued", "processing", "completed"]
            progress = [e["payload"]["progress"] for e in events if "progress" in e["payload"]]
            assert progress == sorted(progress) and len(progress) >= 3 and progress[-1] == 1.0
            assert events[-1]["payload"]["result"] == {"slept": 1.5}
            assert {e["metadata"]["correlation_id"] for e in events} == {job["correlation_id"]}
    finally:
        for w in watchers:
            w.close()
    final = client.job(job["id"])
    assert final["status"] == "completed" and final["attempts"] == 1
    http_events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    assert [e["event_id"] for e in http_events] == [e["event_id"] for e in events]


def test_reconnecting_client_resumes_from_its_last_seq(stack, client):
    """A client that drops mid-job and comes back with `since` misses nothing, gets no repeat."""
    job = client.submit("sleep", {"seconds": 2, "steps": 4})
    first = EventClient(relay_urls(stack)[0], client.secret)
    first.subscribe(f"job:{job['id']}")
    wait_until(lambda: len(first.of(job["id"])) >= 3, 20, 0.05, "three events")
    first.close()
    last = max(seqs(first.of(job["id"])))
    client.wait_status(job["id"], "completed")
    second = EventClient(relay_urls(stack)[1], client.secret)
    try:
        assert second.subscribe(f"job:{job['id']}", since=last) == {"ok": True}
        events = second.wait_for_status(job["id"], "completed", timeout=10)
        combined = seqs(first.of(job["id"])) + seqs(events)
        assert combined == list(range(1, len(combined) + 1))
    finally:
        second.close()


def test_card_and_tenant_rooms_receive_live_events(stack, client):
    """`card:` and `tenant` rooms carry the events of every job in them."""
    watcher = EventClient(relay_urls(stack)[0], client.secret)
    try:
        assert watcher.subscribe("card:c-42") == {"ok": True}
        assert watcher.subscribe("tenant") == {"ok": True}
        job = client.submit("echo", {"x": 1}, card_id="c-42")

        def both_rooms_done():
            evs = watcher.of(job["id"])
            done = [e for e in evs if e["payload"].get("status") == "completed"]
            return len(done) == 2 and evs

        wait_until(both_rooms_done, 30, 0.05, "the completed event in both rooms")
        marker = send_marker(client, [watcher], [job["id"]])  # nothing more may come before it
        events = watcher.of(job["id"])
        # The marker was in the tenant room and its own card room only.
        assert len(watcher.of(marker)) == 2 * 3
        # Each event arrives once per room it is in (card + tenant), in order in each.
        ids = [e["event_id"] for e in events]
        assert len(ids) == 2 * len(set(ids))
        assert sorted({e["seq"] for e in events}) == list(range(1, len(ids) // 2 + 1))
    finally:
        watcher.close()


def test_relay_refuses_bad_tokens_and_other_tenants_rooms(stack, client, other_tenant):
    """No token, a wrong token, or another tenant's job: refused."""
    import socketio

    for auth in (None, {"token": "orc_wrong"}, {"token": 42}):
        sio = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio.connect(relay_urls(stack)[0], auth=auth, transports=["websocket"], wait_timeout=5)
    job = client.submit("echo", {})
    intruder = EventClient(relay_urls(stack)[0], other_tenant[0])
    try:
        ack = intruder.subscribe(f"job:{job['id']}")
        assert ack["ok"] is False and ack["error"]["code"] == "NOT_FOUND"
        assert intruder.subscribe("tenant:someone-else")["ok"] is False
        assert intruder.subscribe("bogus")["error"]["code"] == "VALIDATION_ERROR"
        assert intruder.subscribe("tenant") == {"ok": True}
        client.wait_status(job["id"], "completed")
        # A job of the intruder's own tenant, sent after every event of the job was published,
        # reaches its tenant room: whatever of the job the relay would send has arrived too.
        own = Client(client.base, other_tenant[0])
        marker = send_marker(own, [intruder], [job["id"]])
        assert {e["subject"]["id"] for e in intruder.events} == {marker}
        assert intruder.of(job["id"]) == []
    finally:
        intruder.close()


def test_cancel_a_processing_job_stops_it(stack, client):
    """A running sleep job stops at its next checkpoint and ends `cancelled`."""
    job = client.submit("sleep", {"seconds": 30, "steps": 30})
    client.wait_status(job["id"], "processing")
    asked = time.monotonic()
    resp = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["cancel_requested"] is True
    final = client.wait_status(job["id"], "cancelled", timeout=10)
    assert time.monotonic() - asked < 5
    assert final["finished_at"] is not None
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_TRANSITION"


def test_cancelled_queued_job_never_runs(stack, client):
    """A delayed job cancelled while queued never starts."""
    job = client.submit("echo", {"a": 1}, countdown_s=2)
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    # A job due later than the cancelled one: once the sweep ran it, it had its chance to
    # send the cancelled one too.
    later = client.submit("echo", {"b": 2}, countdown_s=2.5)
    client.wait_status(later["id"], "completed", timeout=20)
    final = client.job(job["id"])
    assert final["status"] == "cancelled" and final["attempts"] == 0


def test_countdown_job_waits_in_postgres_then_runs(stack, client):
    """`countdown_s` delays the run; the beat sweep dispatches it when due."""
    start = time.monotonic()
    job = client.submit("echo", {"later": True}, countdown_s=2)
    assert client.job(job["id"])["status"] == "queued"
    final = client.wait_status(job["id"], "completed", timeout=15)
    assert time.monotonic() - start >= 2
    assert final["result"] == {"later": True}


def test_transient_failures_retry_with_backoff_then_complete(stack, client):
    """`fail` transient twice: two `retrying`, then `completed` on the third attempt."""
    job = client.submit("fail", {"message": "flaky", "transient": True, "times": 2})
    final = client.wait_status(job["id"], "completed", timeout=30)
    assert final["attempts"] == 3 and final["result"] == {"attempts": 3}
    statuses = [
        e["payload"]["status"]
        for e in client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
        if e["event_type"] == "job.status.updated"
    ]
    assert statuses == [
        "queued", "processing", "retrying", "processing", "retrying", "processing", "completed",
    ]


def test_exhausted_retries_fail_then_explicit_retry_succeeds(stack, client):
    """max_retries 1 allows 2 attempts; an explicit retry runs again, attempts keep counting."""
    job = client.submit(
        "fail", {"message": "not yet", "transient": True, "times": 3}, max_retries=1
    )
    failed = client.wait_status(job["id"], "failed", timeout=30)
    assert failed["attempts"] == 2
    assert failed["error"] == {"code": "TRANSIENT_ERROR", "message": "not yet"}
    resp = client.post(f"/api/v1/jobs/{job['id']}/retry")
    assert resp.status_code == 202 and resp.json()["status"] == "queued"
    final = client.wait_status(job["id"], "completed", timeout=30)
    assert final["attempts"] == 4


def test_permanent_failure_carries_the_generators_message(stack, client):
    """A permanent failure is not retried and keeps the generator's message."""
    job = client.submit("fail", {"message": "model refused the prompt"})
    final = client.wait_status(job["id"], "failed", timeout=20)
    assert final["attempts"] == 1
    assert final["error"]["message"] == "model refused the prompt"
    assert client.post(f"/api/v1/jobs/{job['id']}/retry").status_code == 202


def test_echo_result_and_artifact(stack, client):
    """`echo` completes with its params and serves them as the result artifact."""
    job = client.submit("echo", {"prompt": "a cat", "n": 2})
    final = client.wait_status(job["id"], "completed")
    assert final["result"] == {"prompt": "a cat", "n": 2}
    resp = client.get(f"/api/v1/jobs/{job['id']}/result")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"prompt": "a cat", "n": 2}
    sleeper = client.submit("sleep", {"seconds": 0})
    client.wait_status(sleeper["id"], "completed")
    assert client.get(f"/api/v1/jobs/{sleeper['id']}/result").status_code == 404


def test_duplicate_task_message_leaves_a_terminal_job_unchanged(stack, client, domain):
    """The same task message delivered twice (at-least-once) does not move a finished job."""
    from sqlalchemy import select

    from app import db
    from app.models import Job
    from app.outbox import names
    from workers import make_celery

    job = client.submit("echo", {"once": True})
    done = client.wait_status(job["id"], "completed")
    with db.transaction() as conn:
        row = conn.execute(select(Job).where(Job.id == job["id"])).mappings().one()
    events_before = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    message = {"job_id": job["id"], "token": str(row["dispatch_token"])}
    celery = make_celery(domain)
    for _ in range(2):
        celery.send_task(names.RUN_JOB, kwargs=message, task_id=job["id"], queue=names.JOBS_QUEUE)
    # Both copies reached a worker, which read the job and dropped them (its log says so).
    wait_until(lambda: dropped_copies(stack, job["id"]) >= 2, 30, 0.1, "two copies dropped")
    assert client.job(job["id"]) == done
    assert client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"] == events_before


def dropped_copies(stack, job_id: str) -> int:
    """How many messages of the job the workers logged as stale or duplicate, dropped."""
    line = f"job {job_id}: stale or duplicate message"  # (status …) dropped
    return sum(p.log_path.read_text(errors="replace").count(line)
               for p in stack.procs_named("worker"))


def test_many_jobs_all_complete_across_two_workers(stack, client):
    """A burst of jobs is shared by both workers and every one completes."""
    from sqlalchemy import text

    from app import db

    ids = [client.submit("echo", {"i": i})["id"] for i in range(40)]
    wait_until(
        lambda: all(client.job(i)["status"] == "completed" for i in ids), 60, 0.5, "40 jobs"
    )
    with db.transaction() as conn:
        workers = conn.execute(
            text("SELECT count(DISTINCT worker) FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ids},
        ).scalar_one()
    assert workers == 2


def test_flower_lists_the_workers_and_our_tasks_behind_basic_auth(stack, client):
    """Flower (the Procfile's command) shows both workers and the job task, only with auth."""
    import requests

    flower = stack.start("flower", FLOWER_BASIC_AUTH="ops:s3cret")
    base = stack.url(flower)
    wait_until(
        lambda: requests.get(base + "/healthcheck", timeout=2).status_code == 200,
        30, 0.3, "flower",
    )
    assert requests.get(base + "/api/workers", timeout=5).status_code == 401
    auth = ("ops", "s3cret")

    def workers():
        names = requests.get(base + "/api/workers?refresh=1", auth=auth, timeout=10).json()
        return len([n for n in names if n.startswith("worker-")]) >= 2 and names

    wait_until(workers, 30, 0.5, "flower to list two workers")
    # Flower learns a task's name from its task-received event; its event receiver may still
    # be connecting when the first job runs, so a job that ran too early is seen without one.
    # Submit fresh jobs until Flower has seen one whole.
    submitted = []

    def named_task():
        job = client.submit("echo", {"seen_by": "flower", "n": len(submitted)})
        submitted.append(job["id"])
        client.wait_status(job["id"], "completed")
        seen = requests.get(base + "/api/tasks", auth=auth, timeout=5).json()
        return next((seen[i] for i in submitted if seen.get(i, {}).get("name")), None)

    tasks = wait_until(named_task, 30, 0.5, "flower to list a job's task with its name")
    assert tasks["name"] == "orchestra.jobs.run"


def test_metrics_report_jobs_queue_and_relay_connections(stack, client):
    """`/metrics` on the api counts jobs by kind and status; the relay counts its clients."""
    import re

    import requests

    job = client.submit("echo", {"metric": 1})
    client.wait_status(job["id"], "completed")
    api = stack.url(stack.procs_named("api")[0])

    def counted():  # the sweep counts jobs by status every METRICS_COUNTS_INTERVAL_S
        text = requests.get(api + "/metrics", timeout=5).text
        match = re.search(r'orchestra_jobs\{kind="echo",status="completed"\} (\S+)', text)
        return match and float(match.group(1)) >= 1 and text

    text = wait_until(counted, 30, 0.2, "the sweep to count the completed job")
    age = re.search(r"^orchestra_counts_age_seconds (\S+)", text, re.M)
    assert age and float(age.group(1)) < 30
    for name in ("orchestra_queue_depth", "orchestra_outbox_unpublished_events",
                 "orchestra_job_run_seconds_count"):
        assert name in text
    relay = stack.url(stack.procs_named("relay")[0])
    watcher = EventClient(relay, client.secret)
    try:
        watcher.subscribe("tenant")
        relay_text = requests.get(relay + "/metrics", timeout=5).text
        connections = re.search(r"^orchestra_relay_connections (\S+)", relay_text, re.M)
        assert connections and float(connections.group(1)) >= 1
    finally:
        watcher.close()


def test_a_runaway_job_times_out_and_the_worker_lives_on(stack, client):
    """`timeout_s` ends a run that outlives it `failed` with `TIMEOUT`; workers keep working."""
    job = client.submit("sleep", {"seconds": 30, "steps": 1}, timeout_s=1, max_retries=0)
    final = client.wait_status(job["id"], "failed", timeout=30)
    assert final["error"]["code"] == "TIMEOUT" and final["attempts"] == 1
    assert all(w.alive() for w in stack.procs_named("worker"))
    after = client.submit("echo", {"still": "working"})
    assert client.wait_status(after["id"], "completed", timeout=20)["result"] == {
        "still": "working"
    }


def test_a_long_countdown_outlives_the_visibility_timeout_without_running_early(
    stack, client, domain
):
    """The broker's visibility timeout is short (a third of WORKER_LOST_REDELIVERY_S); a job
    delayed well beyond it still runs once, and not before it is due."""
    from datetime import datetime, timedelta

    delay = domain.worker_lost_redelivery_s * 1.5  # several visibility timeouts
    job = client.submit("echo", {"patient": True}, countdown_s=delay)
    final = client.wait_status(job["id"], "completed", timeout=delay + 20)
    created = datetime.fromisoformat(final["created_at"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(final["started_at"].replace("Z", "+00:00"))
    assert started - created >= timedelta(seconds=delay) and final["attempts"] == 1


def test_a_batch_of_a_thousand_runs_to_the_last_job(stack, client):
    """POST /api/v1/jobs/batch through the real api: every one of 1,000 jobs completes."""
    import uuid

    from sqlalchemy import func, select

    from app import db
    from app.models import Job

    card = f"batch-{uuid.uuid4().hex[:8]}"
    body = {"jobs": [{"kind": "echo", "params": {"i": i}, "card_id": card} for i in range(1000)]}
    resp = client.http.post(client.base + "/api/v1/jobs/batch", json=body, timeout=60)
    assert resp.status_code == 202, resp.text
    assert [j["params"]["i"] for j in resp.json()["items"]] == list(range(1000))

    def completed() -> int:
        q = select(func.count()).where(Job.card_id == card, Job.status == "completed")
        with db.transaction() as conn:
            return conn.execute(q).scalar_one()

    wait_until(lambda: completed() == 1000, 180, 0.5, "1,000 batch jobs to complete")

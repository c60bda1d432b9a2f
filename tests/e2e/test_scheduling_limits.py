"""The scheduler's limits on real processes: the API, two workers (four slots), the system
worker and beat. What ran when is read back from the jobs' `processing` events and the event
that ended each attempt (a SIGKILLed attempt ends when its row leaves `processing`, later than
the process died: the intervals are conservative), so "never over a limit" is checked on what
the rows say happened, not on what the scheduler meant."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from app import db, tenants
from app.scheduling import limits
from tests.e2e.conftest import Client, start_stack
from tests.e2e.test_resilience import running_worker_pid
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

SLEEP = {"seconds": 1.5, "steps": 1}


@pytest.fixture(scope="module")
def stack(domain):
    stack = start_stack(domain, workers=2, relays=0)
    yield stack
    print(stack.logs())
    stack.stop()


def new_client(stack, name: str, scopes=tenants.DEFAULT_SCOPES, **own) -> Client:
    secret = tenants.create_key(name, scopes)
    if own:
        limits.set_tenant_limits(name, own)
    return Client(stack.url(stack.procs_named("api")[0]), secret)


def attempts(job_ids: list[str]) -> list[tuple[str, float, float]]:
    """`(job id, start, end)` of every attempt: from each `processing` event to the next
    status event of its job, in seconds since the epoch."""
    with db.transaction() as conn:
        rows = conn.execute(text("""
            SELECT subject_id::text AS job_id, payload->>'status' AS status,
                   extract(epoch FROM created_at) AS at
            FROM events WHERE subject_type = 'job' AND event_type = 'job.status.updated'
              AND subject_id = ANY(CAST(:ids AS uuid[]))
            ORDER BY subject_id, seq"""), {"ids": job_ids}).all()
    out, open_at = [], {}
    for r in rows:
        if r.job_id in open_at:
            out.append((r.job_id, open_at.pop(r.job_id), float(r.at)))
        if r.status == "processing":
            open_at[r.job_id] = float(r.at)
    assert not open_at, f"attempts never ended: {open_at}"
    return out


def most_at_once(spans: list[tuple[str, float, float]]) -> int:
    """The most attempts of `spans` running at one moment (an end before a start at a tie:
    the next job's claim commits after the end that freed its slot)."""
    marks = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    running = most = 0
    for _, step in marks:
        running += step
        most = max(most, running)
    return most


def test_no_tenant_or_key_runs_over_its_limit_across_a_killed_worker(stack):
    busy = new_client(stack, "limits-busy", max_running=2, key_limit=1)
    other = new_client(stack, "limits-other")
    keyed = [busy.submit("sleep", SLEEP, concurrency_key="card-1")["id"] for _ in range(3)]

    def reason(job_id):
        return busy.job(job_id)["waiting_reason"]["code"]

    # Passes run on the api's admission thread, after the submit answered: a job waits for
    # one ("fair_share") until it ran, then says what holds it back.
    wait_until(lambda: reason(keyed[1]) == "key_limit", 10, 0.05, "the key's limit")
    free = [busy.submit("sleep", SLEEP)["id"] for _ in range(4)]
    wait_until(lambda: reason(free[3]) == "tenant_limit", 10, 0.05, "the tenant's limit")
    others = [other.submit("sleep", SLEEP)["id"]]

    # Kill the worker running the key's first job: its slot is held until the sweep moves
    # the row back to `retrying`, and a new worker takes the lost one's place.
    busy.wait_status(keyed[0], "processing", timeout=30)
    victim_pid = int(running_worker_pid(busy, keyed[0]))
    stack.kill(next(p for p in stack.procs_named("worker") if p.popen.pid == victim_pid))
    stack.start("worker")
    for job_id in keyed + free:
        assert busy.wait_status(job_id, {"completed", "failed"}, timeout=90)["status"] \
            == "completed"
    for job_id in others:
        assert other.wait_status(job_id, {"completed", "failed"}, timeout=90)["status"] \
            == "completed"

    spans = attempts(keyed + free + others)
    assert len([s for s in spans if s[0] == keyed[0]]) == 2  # the killed attempt, then one
    assert most_at_once([s for s in spans if s[0] in keyed]) == 1
    assert most_at_once([s for s in spans if s[0] in keyed + free]) <= 2
    # The other tenant's job did not wait behind the busy one's backlog: it was given a slot
    # before the busy tenant's last jobs. (Its start may come later: the killed worker may
    # have held its message, which the broker hands out again after its visibility timeout.)
    with db.transaction() as conn:
        admitted = dict(conn.execute(text("SELECT id::text, admitted_at FROM jobs "
                                          "WHERE id::text = ANY(:ids)"),
                                     {"ids": free + others}).all())
    assert min(admitted[j] for j in others) < max(admitted[j] for j in free)


def test_a_paused_kind_runs_nothing_until_resumed(stack):
    admin = new_client(stack, "limits-paused", (*tenants.DEFAULT_SCOPES, "admin"))
    assert admin.post("/api/v1/pauses", {"kind": "sleep"}).json()["paused"] is True
    held = [admin.submit("sleep", {"seconds": 0.2})["id"] for _ in range(3)]
    echo = admin.submit("echo", {"hello": "world"})["id"]
    assert admin.wait_status(echo, "completed", timeout=30)["status"] == "completed"
    time.sleep(2)  # several sweeps (admission passes) go by
    for job_id in held:
        job = admin.job(job_id)
        assert job["status"] == "queued"
        assert job["waiting_reason"]["code"] == "paused"
    assert attempts(held) == []  # none of them ever started

    resumed = admin.post("/api/v1/pauses/resume", {"kind": "sleep"}).json()
    assert resumed["paused"] is False
    for job_id in held:
        assert admin.wait_status(job_id, {"completed", "failed"}, timeout=30)["status"] \
            == "completed"
    wait_until(lambda: len(attempts(held)) == 3, 10, 0.2, "the attempts' events")

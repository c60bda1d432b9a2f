"""Jobs of an instant generator sent together share one Celery message, run in one commit.

The outbox groups them (at most DISPATCH_GROUP_MAX a message, rows of equal options), the
message names its rows for the sweep's look at the broker, and a worker claims, runs and
completes them in one transaction; what cannot go that way goes as a job of its own.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from sqlalchemy.exc import StatementError

from app import artifacts, config, db, events, jobs, runs
from app.models import JobStatus
from app.outbox import broker, unit_of_work
from app.outbox.names import RUN_JOB, RUN_JOBS
from app.outbox.send import ROWS_HEADER
from app.scheduling import admission
from tests.integration.test_instant_runs import INSTANT, _statuses, commits
from tests.integration.test_jobs_service import job_row


@pytest.fixture
def group_max(domain):
    """Settings with DISPATCH_GROUP_MAX of 4, for the test's length."""
    config.install(domain.with_(dispatch_group_max=4))
    yield 4
    config.install(domain)


def _made_together(tenant, reqs: list[dict]) -> list[tuple[str, str]]:
    """Jobs made in one unit of work (as a batch makes them): `(id, token)` each."""
    with unit_of_work("api") as uow:
        made = [jobs.create(uow, tenant[1], req)[0] for req in reqs]
    assert admission.settle()  # the pass they asked for admitted and sent them
    return [(str(job.id), str(job.dispatch_token)) for job in made]


def _messages_for(domain, ids: set[str]) -> list[tuple[str, list[str]]]:
    """The broker's messages for these jobs: `(task name, job ids)` each."""
    client = redis.Redis.from_url(domain.redis_url)
    found = []
    for name in ["jobs", *(f"jobs:{p}" for p in range(1, 10))]:
        for raw in client.lrange(name, 0, -1):
            headers = json.loads(raw)["headers"]
            rows = headers.get(ROWS_HEADER) or [headers["id"]]
            if set(rows) & ids:
                found.append((headers["task"], rows))
    return found


def test_instant_jobs_made_together_share_messages_of_at_most_the_group_max(
    tenant, domain, group_max
):
    reqs = [{"kind": "echo", "params": {"i": i}} for i in range(10)]
    reqs += [{"kind": "sleep", "params": {"seconds": 0}}] * 2
    reqs += [{"kind": "echo", "params": {}, "priority": 9}]  # other options: not with those
    made = _made_together(tenant, reqs)
    ids = [job_id for job_id, _ in made]
    messages = _messages_for(domain, set(ids))
    groups = sorted((task, len(rows)) for task, rows in messages)
    # The priority-9 echo found no job of its options to share with: a message of its own.
    assert groups == [(RUN_JOB, 1)] * 3 + [(RUN_JOBS, 2), (RUN_JOBS, 4), (RUN_JOBS, 4)]
    assert sorted(j for _, rows in messages for j in rows) == sorted(ids)
    assert set(ids) <= broker.held_row_ids(redis.Redis.from_url(domain.redis_url), ["jobs"])


def test_a_group_max_of_one_gives_every_job_its_own_message(tenant, domain):
    config.install(domain.with_(dispatch_group_max=1))
    try:
        made = _made_together(tenant, [{"kind": "echo", "params": {}}] * 3)
    finally:
        config.install(domain)
    messages = _messages_for(domain, {job_id for job_id, _ in made})
    assert sorted(task for task, _ in messages) == [RUN_JOB] * 3


def test_a_shared_message_runs_its_jobs_in_one_commit_and_one_publish(
    tenant, listener, admissions
):
    made = _made_together(tenant, [{"kind": "echo", "params": {"i": i}} for i in range(5)])
    listener.drain(0.3)
    admissions.clear()
    with commits() as seen:
        ended = runs.execute_group(made, "w@test")
    assert ended == {job_id: JobStatus.COMPLETED for job_id, _ in made}
    assert len(seen) == 1
    assert admissions == [1]  # one pass for the five freed slots
    published = listener.drain()
    for i, (job_id, _) in enumerate(made):
        assert [s for _, _, s in _statuses(job_id)] == ["queued", "processing", "completed"]
        row = job_row(job_id)
        assert row["result"] == {"i": i} and row["attempts"] == 1
        assert [(e["seq"], e["payload"]["status"]) for e in published
                if e["subject"]["id"] == job_id] == [(2, "processing"), (3, "completed")]


def test_a_shared_message_delivered_again_or_stale_does_nothing(tenant):
    made = _made_together(tenant, [{"kind": "echo", "params": {}}] * 3)
    assert set(runs.execute_group(made, "w@test").values()) == {JobStatus.COMPLETED}
    assert admission.settle()  # the pass their ends asked for: not the second run's commit
    stale = [*made, (str(uuid.uuid4()), str(uuid.uuid4())), ("not-a-uuid", "nor-this")]
    with commits() as seen:
        again = runs.execute_group(stale, "w@test")
    assert set(again.values()) == {None} and len(again) == 5
    assert len(seen) == 1  # the one read, committing nothing
    assert all(len(_statuses(job_id)) == 3 for job_id, _ in made)


def test_a_job_given_twice_in_one_message_runs_once(tenant):
    (pair,) = _made_together(tenant, [{"kind": "echo", "params": {}}])
    assert runs.execute_group([pair, pair], "w@test") == {pair[0]: JobStatus.COMPLETED}
    assert job_row(pair[0])["attempts"] == 1 and len(_statuses(pair[0])) == 3


def test_a_job_that_raised_in_a_shared_message_fails_alone_and_the_others_complete(tenant):
    made = _made_together(tenant, [
        {"kind": INSTANT.name, "params": {}},
        {"kind": INSTANT.name, "params": {"raise": True}},
        {"kind": "echo", "params": {}},
    ])
    ended = runs.execute_group(made, "w@test")
    assert [ended[job_id] for job_id, _ in made] == [
        JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED
    ]
    assert _statuses(made[0][0]) == [  # its progress between processing and completed
        (1, "job.status.updated", "queued"),
        (2, "job.status.updated", "processing"),
        (3, "job.progress.updated", None),
        (4, "job.status.updated", "completed"),
    ]
    failed = made[1][0]
    assert [s for _, _, s in _statuses(failed)] == ["queued", "processing", "failed"]
    assert job_row(failed)["error"] == {"code": "ASKED", "message": "asked to fail"}


def test_a_refused_outcome_rolls_the_group_back_and_each_job_goes_its_own_way(
    tenant, monkeypatch
):
    made = _made_together(tenant, [{"kind": "echo", "params": {"n": n}} for n in range(3)])
    real, calls = artifacts.attach_many, []

    def refuse_the_first(conn, staged):
        calls.append(len(staged))
        if len(calls) == 1:
            raise StatementError("refused", None, None, ValueError("refused"))
        return real(conn, staged)

    monkeypatch.setattr(artifacts, "attach_many", refuse_the_first)
    ended = runs.execute_group(made, "w@test")
    assert set(ended.values()) == {JobStatus.COMPLETED}
    assert calls == [3, 1, 1, 1]  # the group's, then one for each job on its own
    for job_id, _ in made:  # nothing of the group's transaction stayed
        assert [s for _, _, s in _statuses(job_id)] == ["queued", "processing", "completed"]
        assert job_row(job_id)["attempts"] == 1


def test_a_job_not_instant_on_this_worker_runs_on_its_own(tenant, domain, tmp_path):
    made = _made_together(tenant, [{"kind": "echo", "params": {"x": 1}}] * 2)
    # A worker whose store writes files runs no job in a transaction (`_instant_generator`).
    config.install(domain.with_(artifact_store="filesystem", artifact_dir=str(tmp_path)))
    try:
        ended = runs.execute_group(made, "w@test")
        with db.transaction() as conn:
            stored = [artifacts.find(conn, uuid.UUID(job_id)) for job_id, _ in made]
    finally:
        config.install(domain)
    assert set(ended.values()) == {JobStatus.COMPLETED}
    assert all(a.path is not None and a.body is None for a in stored)  # the usual way: a file
    for job_id, _ in made:
        assert [s for _, _, s in _statuses(job_id)] == ["queued", "processing", "completed"]


def test_events_recorded_together_take_each_subjects_next_seqs_in_order(tenant):
    """`events.record_many`, as the group's write uses it: subjects interleaved, some with
    events before, each gets its next seqs in the order given, gapless."""
    made = _made_together(tenant, [{"kind": "echo", "params": {}}] * 2)
    a, b = (jobs.get(tenant[1], job_id) for job_id, _ in made)
    note = {"job_id": str(a.id), "progress": 0.5}
    with unit_of_work("worker") as uow:
        uow.record(jobs.subject(a), events.JOB_PROGRESS_UPDATED, note)  # a at seq 2
        envelopes = uow.record_many([
            (jobs.subject(b), events.JOB_PROGRESS_UPDATED, {**note, "job_id": str(b.id)}),
            (jobs.subject(a), events.JOB_PROGRESS_UPDATED, note),
            (jobs.subject(b), events.JOB_PROGRESS_UPDATED, {**note, "job_id": str(b.id)}),
            (jobs.subject(a), events.JOB_PROGRESS_UPDATED, note),
        ])
    assert [(e["subject"]["id"], e["seq"]) for e in envelopes] == [
        (str(b.id), 2), (str(a.id), 3), (str(b.id), 3), (str(a.id), 4)
    ]
    assert [seq for seq, _, _ in _statuses(str(a.id))] == [1, 2, 3, 4]
    assert [seq for seq, _, _ in _statuses(str(b.id))] == [1, 2, 3]

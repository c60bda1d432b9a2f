"""An instant generator's job is claimed, run and completed in one transaction.

`processing` and `completed` commit together and leave in one publish, in order; what the
generator raises is judged after the claim commits, as any run's failure; an outcome
Postgres refuses rolls the whole transaction back and the run goes the usual way.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import StatementError

from app import artifacts, config, db, jobs, runs
from app.generators import Output, PermanentError, register
from app.models import JobArtifact, JobStatus
from tests.integration.test_jobs_service import event_rows, job_row


class _Instant:
    """An instant generator that reports progress, or raises when asked to."""

    name = f"instant-test-{uuid.uuid4().hex[:6]}"
    params_schema = {"type": "object"}
    instant = True

    def run(self, params, ctx):
        if DURING_RUN:
            DURING_RUN.pop()()
        if params.get("raise"):
            raise PermanentError("asked to fail", code="ASKED")
        ctx.progress(0.5, "half")
        ctx.check_cancelled()
        return Output(result={"ok": True})


INSTANT = register(_Instant())
DURING_RUN: list = []  # what a test does while the instant generator runs


@contextmanager
def commits():
    """How many transactions this process commits meanwhile."""
    seen: list[int] = []
    engine = db.engine()

    def on_commit(conn):
        seen.append(1)

    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


def _submitted(tenant, req) -> tuple[str, str]:
    job, _ = jobs.submit(tenant[1], req)
    return str(job.id), str(job_row(job.id)["dispatch_token"])


def _statuses(job_id) -> list[tuple[int, str, str | None]]:
    return [
        (r["seq"], r["event_type"], r["payload"].get("status"))
        for r in event_rows(uuid.UUID(job_id))
    ]


def test_an_echo_job_runs_in_one_commit_and_publishes_both_moves_together(
    tenant, listener, admissions
):
    job_id, token = _submitted(tenant, {"kind": "echo", "params": {"a": 1}})
    listener.drain(0.3)
    admissions.clear()
    with commits() as seen:
        assert runs.execute(job_id, token, "w@test") == JobStatus.COMPLETED
    assert len(seen) == 1
    assert admissions == [1]  # its slot is free: one pass asked for
    assert [s for _, _, s in _statuses(job_id)] == ["queued", "processing", "completed"]
    published = [e for e in listener.drain() if e["subject"]["id"] == job_id]
    assert [(e["seq"], e["payload"]["status"]) for e in published] == [
        (2, "processing"), (3, "completed")
    ]
    row = job_row(job_id)
    assert row["status"] == "completed" and row["result"] == {"a": 1} and row["attempts"] == 1
    with db.transaction() as conn:
        assert conn.execute(
            select(JobArtifact.body).where(JobArtifact.job_id == uuid.UUID(job_id))
        ).scalar_one() == b'{"a": 1}'


def test_progress_of_an_instant_run_is_recorded_before_completed(tenant):
    job_id, token = _submitted(tenant, {"kind": INSTANT.name, "params": {}})
    assert runs.execute(job_id, token, "w@test") == JobStatus.COMPLETED
    assert _statuses(job_id) == [
        (1, "job.status.updated", "queued"),
        (2, "job.status.updated", "processing"),
        (3, "job.progress.updated", None),
        (4, "job.status.updated", "completed"),
    ]


def test_a_duplicate_message_after_an_instant_run_does_nothing(tenant):
    job_id, token = _submitted(tenant, {"kind": "echo", "params": {}})
    assert runs.execute(job_id, token, "w@test") == JobStatus.COMPLETED
    assert runs.execute(job_id, token, "w@test") is None
    assert len(_statuses(job_id)) == 3


def test_what_an_instant_generator_raises_fails_its_job_after_the_claim(tenant):
    job_id, token = _submitted(tenant, {"kind": INSTANT.name, "params": {"raise": True}})
    assert runs.execute(job_id, token, "w@test") == JobStatus.FAILED
    assert [s for _, _, s in _statuses(job_id)] == ["queued", "processing", "failed"]
    assert job_row(job_id)["error"] == {"code": "ASKED", "message": "asked to fail"}


def test_a_refused_outcome_rolls_the_claim_back_and_goes_the_usual_way(tenant, monkeypatch):
    job_id, token = _submitted(tenant, {"kind": "echo", "params": {"b": 2}})
    real, calls = artifacts.attach, []

    def refuse_once(conn, job_id, staged):
        calls.append(job_id)
        if len(calls) == 1:
            raise StatementError("refused", None, None, ValueError("refused"))
        return real(conn, job_id, staged)

    monkeypatch.setattr(artifacts, "attach", refuse_once)
    assert runs.execute(job_id, token, "w@test") == JobStatus.COMPLETED
    assert len(calls) == 2
    # Nothing of the first transaction stayed: one processing, one attempt.
    assert [s for _, _, s in _statuses(job_id)] == ["queued", "processing", "completed"]
    assert job_row(job_id)["attempts"] == 1


@pytest.mark.parametrize(("store", "expected"), [("postgres", True), ("filesystem", False)])
def test_only_a_store_that_writes_no_file_runs_instantly(domain, store, expected):
    config.install(domain.with_(artifact_store=store))
    try:
        assert (runs._instant_generator("echo") is not None) is expected
        assert runs._instant_generator("sleep") is None
    finally:
        config.install(domain)


def test_a_job_cancelled_while_its_instant_run_ran_stays_cancelled(tenant):
    job_id, token = _submitted(tenant, {"kind": INSTANT.name, "params": {}})
    DURING_RUN.append(lambda: jobs.cancel(tenant[1], job_id))  # nothing holds the row
    assert runs.execute(job_id, token, "w@test") is None
    assert [s for _, _, s in _statuses(job_id)] == ["queued", "cancelled"]
    assert job_row(job_id)["status"] == "cancelled" and job_row(job_id)["attempts"] == 0

"""Retention: finished jobs past `RETENTION_S` leave Postgres with their events; nothing else."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text

from app import config, db, jobs, retention
from app.models import Event, EventCounter, Job


def _finish(job_id: str, status: str, days_ago: float) -> None:
    with db.transaction() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status = :s, finished_at = now() - make_interval(days => :d) "
                "WHERE id = :id"
            ),
            {"s": status, "d": days_ago, "id": job_id},
        )


def _left(job_id: str) -> tuple[int, int, int]:
    jid = uuid.UUID(job_id)
    with db.transaction() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t).where(c == jid)).scalar_one()
            for t, c in (
                (Job, Job.id),
                (Event, Event.subject_id),
                (EventCounter, EventCounter.subject_id),
            )
        )


def test_old_finished_jobs_go_with_their_events_and_nothing_else(domain, tenant):
    def submit():
        return jobs.submit(tenant[1], {"kind": "echo", "params": {}, "countdown_s": 3600})[0]["id"]

    old_done, old_failed, recent, old_waiting = submit(), submit(), submit(), submit()
    _finish(old_done, "completed", 40)
    _finish(old_failed, "failed", 31)
    _finish(recent, "completed", 1)
    with db.transaction() as conn:  # waiting for 40 days, never finished: not ours to drop
        conn.execute(
            text("UPDATE jobs SET created_at = now() - interval '40 days' WHERE id = :id"),
            {"id": old_waiting},
        )
    config.install(domain.with_(retention_s=30 * 86400))
    try:
        while retention.purge_expired(batch=1):  # small batches, as many passes as needed
            pass
    finally:
        config.install(domain)
    assert _left(old_done) == (0, 0, 0) and _left(old_failed) == (0, 0, 0)
    assert _left(recent) == (1, 1, 1) and _left(old_waiting) == (1, 1, 1)


def test_retention_zero_keeps_everything(domain, tenant):
    job = jobs.submit(tenant[1], {"kind": "echo", "params": {}, "countdown_s": 3600})[0]["id"]
    _finish(job, "completed", 400)
    config.install(domain.with_(retention_s=0))
    try:
        assert retention.purge_expired() == 0
    finally:
        config.install(domain)
    assert _left(job) == (1, 1, 1)

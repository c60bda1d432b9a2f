"""Retention: finished jobs past `RETENTION_S` leave Postgres with their events, agents' events
and finished commands too; the audit trail after its own `AUDIT_RETENTION_S`; nothing else."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text

from app import config, db, jobs, outbox, retention
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
        job, _ = jobs.submit(tenant[1], {"kind": "echo", "params": {}, "countdown_s": 3600})
        return str(job.id)

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
    job = str(jobs.submit(tenant[1], {"kind": "echo", "params": {}, "countdown_s": 3600})[0].id)
    _finish(job, "completed", 400)
    config.install(domain.with_(retention_s=0))
    try:
        assert retention.purge_expired() == 0
    finally:
        config.install(domain)
    assert _left(job) == (1, 1, 1)


# --- agents' events, finished commands, the audit trail ------------------------------------


def _agent_with_commands(tenant) -> tuple[uuid.UUID, list[str]]:
    """A stopped agent with four queued `status` commands (and their events, audit rows)."""
    from app.agents import commands, definitions

    agent = definitions.create(tenant[1], {"name": f"r-{uuid.uuid4().hex[:8]}", "type": "echo"})
    cmds = [str(commands.accept(tenant[1], agent.id, "status", {}).id) for _ in range(4)]
    # The outbox's marks (`published_at`) are written by a thread shortly after: one still
    # under way locks its event rows, and a retention pass skips locked rows (SKIP LOCKED),
    # so a test that purges right after could miss one (seen once in CI).
    outbox.flush_marks()
    return agent.id, cmds


def _age(sql: str, **params) -> None:
    with db.transaction() as conn:
        conn.execute(text(sql), params)


def _ids(sql: str, **params) -> set:
    with db.transaction() as conn:
        return {str(v) for v in conn.execute(text(sql), params).scalars()}


def _purge_all(domain, **retain) -> None:
    config.install(domain.with_(**retain))
    try:
        while retention.purge_expired(batch=1):  # small batches, as many passes as needed
            pass
    finally:
        config.install(domain)


def test_old_agent_events_and_finished_commands_go_the_agent_stays(domain, tenant):
    """Agent events and finished commands older than RETENTION_S go; the agent, its `seq`
    counter, its recent events and its unfinished or recent commands stay."""
    agent_id, (old_done, old_failed, recent_done, old_queued) = _agent_with_commands(tenant)
    for cmd, status, days in ((old_done, "completed", 40), (old_failed, "failed", 31),
                              (recent_done, "completed", 1)):
        _age("UPDATE agent_commands SET status = :s, finished_at = now() - "
             "make_interval(days => :d) WHERE id = :id", s=status, d=days, id=cmd)
    _age("UPDATE agent_commands SET created_at = now() - interval '40 days' WHERE id = :id",
         id=old_queued)  # waiting for 40 days, never finished: not ours to drop
    last_seq = _ids("SELECT max(seq) FROM events WHERE subject_id = :a", a=agent_id)
    _age("UPDATE events SET created_at = now() - interval '40 days' "
         "WHERE subject_id = :a AND seq < :s", a=agent_id, s=int(last_seq.pop()))
    seqs_before = _ids("SELECT seq FROM events WHERE subject_id = :a", a=agent_id)
    counter = _ids("SELECT last_seq FROM event_counters WHERE subject_id = :a", a=agent_id)

    _purge_all(domain, retention_s=30 * 86400)

    assert _ids("SELECT seq FROM events WHERE subject_id = :a", a=agent_id) == {
        max(seqs_before, key=int)
    }
    assert _ids("SELECT last_seq FROM event_counters WHERE subject_id = :a", a=agent_id) == counter
    assert _ids("SELECT id FROM agent_commands WHERE agent_id = :a", a=agent_id) == {
        recent_done, old_queued
    }
    assert _ids("SELECT id FROM agents WHERE id = :a", a=agent_id) == {str(agent_id)}


def test_the_audit_trail_has_its_own_longer_retention(domain, tenant):
    """Audit rows outlive RETENTION_S and go after AUDIT_RETENTION_S, whatever their agent."""
    agent_id, _ = _agent_with_commands(tenant)
    rows = sorted(_ids("SELECT id FROM audit_log WHERE subject_id = :a", a=agent_id), key=int)
    assert len(rows) == 5  # agent.create and four agent.command.status
    _age("UPDATE audit_log SET created_at = now() - interval '40 days' WHERE id = :id",
         id=int(rows[0]))
    _age("UPDATE audit_log SET created_at = now() - interval '400 days' WHERE id = :id",
         id=int(rows[1]))

    _purge_all(domain, retention_s=30 * 86400, audit_retention_s=365 * 86400)
    left = _ids("SELECT id FROM audit_log WHERE subject_id = :a", a=agent_id)
    assert left == set(rows) - {rows[1]}

    _purge_all(domain, retention_s=30 * 86400, audit_retention_s=0)  # 0 keeps all
    assert _ids("SELECT id FROM audit_log WHERE subject_id = :a", a=agent_id) == left

"""Retention: what is older than `RETENTION_S` leaves Postgres, the audit trail after its own
`AUDIT_RETENTION_S`.

- finished jobs, with their events, `seq` counters and artifacts;
- agents' events (the agent stays, and so does its counter: `seq` goes on from where it was);
- finished agent commands (the agent's log lines are bounded per agent elsewhere);
- audit rows, after the longer `AUDIT_RETENTION_S`.

Artifact files (filesystem store) are removed after the deleting transaction commits, so a
rollback never leaves a row without its file; a crash in between leaves orphan files.

Run from the beat's sweep in small batches, so one pass stays short however much is due;
each pass deletes at most `batch` rows of each kind, oldest first, and the next pass goes on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from app import artifacts, config, db
from app.models import TERMINAL, AgentCommand, AuditEntry, CommandStatus, Event, EventCounter, Job

log = logging.getLogger(__name__)
_FINISHED_COMMANDS = (CommandStatus.COMPLETED.value, CommandStatus.FAILED.value)


def _cutoff(keep_s: float) -> datetime | None:
    """The moment before which rows go; None when retention is off (0 keeps everything)."""
    return None if keep_s <= 0 else datetime.now(UTC) - timedelta(seconds=keep_s)


def purge_expired(batch: int = 500) -> int:
    """One pass of every retention: up to `batch` rows of each kind; how many went in all."""
    settings = config.current()
    keep, audit = _cutoff(settings.retention_s), _cutoff(settings.audit_retention_s)
    purged = 0
    if keep is not None:
        purged += _purge_jobs(keep, batch)
        purged += _purge_rows(Event, keep, batch, Event.subject_type == "agent")
        purged += _purge_rows(
            AgentCommand,
            keep,
            batch,
            AgentCommand.status.in_(_FINISHED_COMMANDS),
            age=AgentCommand.finished_at,
        )
    if audit is not None:
        purged += _purge_rows(AuditEntry, audit, batch)
    return purged


def _purge_jobs(cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` finished jobs older than `cutoff` (events, counters, artifacts)."""
    with db.transaction() as conn:
        ids = list(
            conn.execute(
                select(Job.id)
                .where(Job.status.in_([s.value for s in TERMINAL]), Job.finished_at < cutoff)
                .order_by(Job.finished_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return 0
        files = artifacts.files_of(conn, ids)
        for table in (Event, EventCounter):  # the jobs' events, and their `seq` counters
            conn.execute(
                delete(table).where(table.subject_type == "job", table.subject_id.in_(ids))
            )
        conn.execute(delete(Job).where(Job.id.in_(ids)))  # artifact rows go by ON DELETE CASCADE
    artifacts.remove(files)
    log.info("retention: purged %d finished jobs older than %s", len(ids), cutoff.isoformat())
    return len(ids)


def _purge_rows(table, cutoff: datetime, batch: int, *where, age=None) -> int:
    """Delete up to `batch` rows of `table` whose `age` column (default `created_at`) is older
    than `cutoff`, oldest first; rows another pass holds are skipped, not waited for."""
    age = table.created_at if age is None else age
    oldest = (
        select(table.id)
        .where(age < cutoff, *where)
        .order_by(age)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with db.transaction() as conn:
        count = conn.execute(delete(table).where(table.id.in_(oldest.scalar_subquery()))).rowcount
    if count:
        log.info("retention: purged %d %s older than %s", count, table.__tablename__,
                 cutoff.isoformat())
    return count

"""Retention: finished jobs older than `RETENTION_S` leave Postgres, with their events.

Their artifact files (filesystem store) are removed after the deleting transaction commits,
so a rollback never leaves a row without its file; a crash in between leaves orphan files.

Run from the beat's sweep in small batches, so one pass stays short however much is due;
each pass deletes at most `batch` jobs, oldest first, and the next pass goes on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from app import artifacts, config, db
from app.models import TERMINAL, Event, EventCounter, Job

log = logging.getLogger(__name__)


def purge_expired(batch: int = 500) -> int:
    """Delete up to `batch` expired finished jobs (events, counters, artifacts with them)."""
    keep_s = config.current().retention_s
    if keep_s <= 0:
        return 0  # retention off: keep everything
    cutoff = datetime.now(UTC) - timedelta(seconds=keep_s)
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
    log.info("retention: purged %d finished jobs older than %ss", len(ids), keep_s)
    return len(ids)

"""Fill the sandbox database fast: finished jobs and their events, in set-based SQL.

One `INSERT ... SELECT generate_series` per table instead of the service's one transaction
per change: a million jobs through the API would take an hour. The rows obey the models'
constraints (statuses, priorities, gapless `seq` from 1 with a matching `event_counters`
row), and are spread over the last days so the time indexes see a realistic order.
For big fills, secondary indexes and constraints are dropped first and rebuilt after
(a sorted build is several times faster than a million random B-tree inserts).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

EVENTS_PER_JOB = 5
# Rows i of a fill: statuses mostly completed, a few failed, cancelled and (rarer still)
# queued; kinds mostly echo, `fail` rare; 100 jobs per card; two jobs a second of history.
_JOBS = """
INSERT INTO jobs (id, tenant_id, kind, params, status, progress, result, attempts,
    max_retries, priority, card_id, correlation_id, timeout_s, dispatch_token, run_after,
    dispatched_at, attempt_started_at, created_at, started_at, finished_at, updated_at)
SELECT gen_random_uuid(), :tenant,
    CASE WHEN i % 1000 = 5 THEN 'fail' WHEN i % 10 < 7 THEN 'echo'
         WHEN i % 10 < 9 THEN 'sleep' ELSE 'http' END,
    jsonb_build_object('i', i),
    status, 1.0, jsonb_build_object('i', i), 1, 3, 5,
    'card-' || (i % (:n / 100 + 1)), CAST(:tag AS text) || i, 3600, gen_random_uuid(),
    t, t, t, t, t, CASE WHEN status = 'queued' THEN NULL ELSE t + interval '1 second' END,
    t + interval '1 second'
FROM (
    SELECT i, now() - interval '1 hour' - (i + :offset) * interval '500 milliseconds' AS t,
        CASE WHEN i % 100000 = 11 THEN 'queued' WHEN i % 50 = 7 THEN 'failed'
             WHEN i % 100 = 3 THEN 'cancelled' ELSE 'completed' END AS status
    FROM generate_series(1, CAST(:n AS integer)) AS i
) s
"""
_EVENTS = """
INSERT INTO events (id, tenant_id, subject_type, subject_id, seq, event_type, source_service,
    payload, metadata, created_at, published_at)
SELECT gen_random_uuid(), j.tenant_id, 'job', j.id, k,
    CASE WHEN k IN (3, 4) THEN 'job.progress.updated' ELSE 'job.status.updated' END,
    'worker',
    CASE WHEN k IN (3, 4) THEN jsonb_build_object('job_id', j.id, 'progress', (k - 2) * 0.5)
         ELSE jsonb_build_object('job_id', j.id, 'attempt', 1,
            'status', (ARRAY['queued', 'processing', '', '', j.status])[k],
            'previous_status', (ARRAY[NULL, 'queued', '', '', 'processing'])[k]) END,
    jsonb_build_object('tenant', CAST(:tenant_name AS text), 'correlation_id', j.correlation_id,
        'card_id', j.card_id, 'version', '1.0'),
    j.created_at + k * interval '100 milliseconds',
    j.created_at + k * interval '100 milliseconds'
FROM jobs j CROSS JOIN generate_series(1, CAST(:per_job AS integer)) AS k
WHERE j.correlation_id LIKE CAST(:tag AS text) || '%'
"""
_COUNTERS = """
INSERT INTO event_counters (subject_type, subject_id, last_seq)
SELECT 'job', id, :per_job FROM jobs WHERE correlation_id LIKE CAST(:tag AS text) || '%'
"""


def _set_aside(conn: Connection, table: str) -> list[str]:
    """Drop the table's secondary indexes and its unique and foreign-key constraints.

    Returns the statements that rebuild them. The primary key stays (for `jobs`,
    `job_artifacts` refers to it).
    """
    rebuild = []
    constraints = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('u', 'f')"
        ),
        {"t": table},
    ).all()
    for name, definition in constraints:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    indexes = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary"
        ),
        {"t": table},
    ).all()
    for name, definition in indexes:
        conn.execute(text(f"DROP INDEX {name}"))
        rebuild.insert(0, definition)  # indexes before the constraints that may use them
    return rebuild


def fill(tenant_id, tenant_name: str, n: int, tag: str, offset: int = 0) -> dict:
    """Insert `n` finished jobs tagged `tag` (their correlation ids) with their events."""
    from app import db

    big = n >= 100_000
    with db.engine().begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        rebuild = _set_aside(conn, "jobs") + _set_aside(conn, "events") if big else []
        conn.execute(text(_JOBS), {"tenant": tenant_id, "n": n, "tag": tag, "offset": offset})
        params = {"tenant_name": tenant_name, "per_job": EVENTS_PER_JOB, "tag": tag}
        conn.execute(text(_EVENTS), params)
        conn.execute(text(_COUNTERS), params)
        for statement in rebuild:
            conn.execute(text(statement))
    # VACUUM too: the visibility map lets reads skip the heap, and autovacuum does not
    # wake up over the new rows in the middle of the timings.
    with db.engine().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("jobs", "events", "event_counters"):
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))
    return {"jobs": n, "events": n * EVENTS_PER_JOB}

"""The beat's sweeps: what the happy path left undone, retried from Postgres until done.

The outbox's own (events to publish, rows to send, messages the broker lost) are in
`app/outbox/sweep.py`; here are the jobs' orphans and timeouts, and the pass that runs all.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func

from app import config, db, retention, telemetry
from app.agents import commands, heartbeats
from app.jobs import admit, load, transition
from app.models import Job, JobStatus
from app.outbox import sweep as outbox_sweep
from app.outbox import unit_of_work
from app.outbox.names import HARD_LIMIT_GRACE_S
from app.runs import end_attempt
from app.scheduling import gauges

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def reap_orphans(limit: int = 100) -> int:
    """Give back the jobs whose worker stopped renewing its lease (killed, machine lost)."""
    settings = config.current()
    # Half the allowed time to notice, so the new run starts within WORKER_LOST_REDELIVERY_S.
    stale = _now() - timedelta(seconds=settings.worker_lost_redelivery_s / 2)
    ids = db.ids_where(
        Job.id, Job.status == JobStatus.PROCESSING.value, Job.heartbeat_at < stale, limit=limit
    )
    for job_id in ids:
        with unit_of_work("beat") as uow:
            job = load(uow.conn, job_id, lock=True)
            if job.status != JobStatus.PROCESSING or job.heartbeat_at >= stale:
                continue
            log.warning("job %s: worker %s lost, attempt %d", job_id, job.worker, job.attempts)
            end_attempt(uow, job, "WORKER_LOST", f"worker {job.worker} stopped", True)
    return len(ids)


def reap_timeouts(limit: int = 100) -> int:
    """Fail the runs that outlived `timeout_s` without their worker noticing."""
    # The worker's own time limit normally ends them; this catches a hard-killed one.
    limit_s = Job.timeout_s + HARD_LIMIT_GRACE_S
    overdue = Job.attempt_started_at + func.make_interval(0, 0, 0, 0, 0, 0, limit_s)
    running = Job.status == JobStatus.PROCESSING.value
    ids = db.ids_where(Job.id, running, overdue < func.now(), limit=limit)
    for job_id in ids:
        with unit_of_work("beat") as uow:
            job = load(uow.conn, job_id, lock=True)
            if job.status == JobStatus.PROCESSING:
                transition(
                    uow,
                    job,
                    JobStatus.FAILED,
                    error={"code": "TIMEOUT", "message": "the job outlived its timeout_s"},
                    run_id=None,
                )
    return len(ids)


def run_all(broker: redis.Redis | None) -> dict:
    """One pass of every sweep, each isolated from the others' failures."""
    steps = {
        # Events to publish, due and lost dispatches of jobs and agent commands.
        **outbox_sweep.steps(broker),
        # Jobs that became due (countdowns, backoffs, holds), and any pass missed.
        "admitted": admit,
        "orphans": reap_orphans,
        "timeouts": reap_timeouts,
        "commands_lost": commands.reap_stuck,
        "agents_inactive": heartbeats.mark_inactive,
        "expired": retention.purge_expired,
        # At most every METRICS_COUNTS_INTERVAL_S: the counts /metrics serves from Redis.
        "counted": lambda: telemetry.refresh_counts(
            config.current().metrics_counts_interval_s, more=gauges.counts),
    }
    done = {}
    for name, step in steps.items():
        try:
            done[name] = step()
        except Exception:  # noqa: BLE001 - one failing sweep must not starve the others
            log.exception("sweep %s failed", name)
            done[name] = None
    return done

"""The beat's sweeps: what the happy path left undone, retried from Postgres until done."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func, or_, select, update

from app import broker as broker_state
from app import config, db, dispatch, events, outbox, retention, telemetry
from app.agents import commands, heartbeats
from app.jobs import load, transition
from app.models import AgentCommand, Job, JobStatus
from app.outbox import unit_of_work
from app.runs import end_attempt

log = logging.getLogger(__name__)
S = JobStatus
_WAITING = (S.QUEUED.value, S.RETRYING.value)


def _now() -> datetime:
    return datetime.now(UTC)


def dispatch_due(limit: int = 500) -> int:
    """Send every waiting job that is due and not yet on the broker; return how many."""
    settings = config.current()
    now = _now()
    settled = now - timedelta(seconds=settings.outbox_grace_s)
    with db.transaction() as conn:
        rows = (
            conn.execute(
                select(Job.id, Job.dispatch_token, Job.priority, Job.timeout_s, Job.correlation_id)
                .where(
                    Job.dispatched_at.is_(None),
                    Job.status.in_(_WAITING),
                    Job.run_after <= now,
                    # A fresh job is being sent by the process that made it; give it a moment.
                    or_(Job.updated_at < settled, Job.run_after > Job.updated_at),
                )
                .order_by(Job.run_after)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .mappings()
            .all()
        )
        sent = outbox.send_and_mark(conn, "job", [dict(r) for r in rows])
    if sent:
        log.info("dispatch sweep sent %d jobs", sent)
    return sent


def reap_orphans(limit: int = 100) -> int:
    """Give back the jobs whose worker stopped renewing its lease (killed, machine lost)."""
    settings = config.current()
    # Half the allowed time to notice, so the new run starts within WORKER_LOST_REDELIVERY_S.
    stale = _now() - timedelta(seconds=settings.worker_lost_redelivery_s / 2)
    ids = db.ids_where(
        Job.id, Job.status == S.PROCESSING.value, Job.heartbeat_at < stale, limit=limit
    )
    for job_id in ids:
        with unit_of_work("beat") as uow:
            job = load(uow.conn, job_id, lock=True)
            if job["status"] != S.PROCESSING or job["heartbeat_at"] >= stale:
                continue
            log.warning(
                "job %s: worker %s lost, attempt %d", job_id, job["worker"], job["attempts"]
            )
            end_attempt(uow, job, "WORKER_LOST", f"worker {job['worker']} stopped", True)
    return len(ids)


def reap_timeouts(limit: int = 100) -> int:
    """Fail the runs that outlived `timeout_s` without their worker noticing."""
    # The worker's own time limit normally ends them; this catches a hard-killed one.
    limit_s = Job.timeout_s + dispatch.HARD_LIMIT_GRACE_S
    overdue = Job.attempt_started_at + func.make_interval(0, 0, 0, 0, 0, 0, limit_s)
    ids = db.ids_where(Job.id, Job.status == S.PROCESSING.value, overdue < func.now(), limit=limit)
    for job_id in ids:
        with unit_of_work("beat") as uow:
            job = load(uow.conn, job_id, lock=True)
            if job["status"] == S.PROCESSING:
                transition(
                    uow,
                    job,
                    S.FAILED,
                    error={"code": "TIMEOUT", "message": "the job outlived its timeout_s"},
                    run_id=None,
                )
    return len(ids)


def _mark_unsent(conn, table, *conditions) -> int:
    """Put matching rows back in the outbox for the dispatch sweeps, with a new token: the
    message thought lost, should it turn up after all, can then claim nothing."""
    return conn.execute(
        update(table)
        .where(*conditions)
        .values(dispatched_at=None, dispatch_token=func.gen_random_uuid())
    ).rowcount


def redispatch_if_broker_lost(broker: redis.Redis) -> int:
    """If the broker lost its data (a Redis restart without persistence), send again.

    A marker key lives in the broker's Redis; when it is gone, every message sent before
    may be gone too, so every waiting job is marked undispatched for `dispatch_due`.
    Duplicates are harmless: a message claims a job only with its current token.
    """
    key = f"{config.current().channel_prefix}:broker-epoch"
    if not broker.set(key, uuid.uuid4().hex, nx=True):
        return 0
    with db.transaction() as conn:
        count = _mark_unsent(conn, Job, Job.status.in_(_WAITING), Job.dispatched_at.isnot(None))
        # Agent commands waiting their turn on the broker were lost the same way.
        count += _mark_unsent(
            conn,
            AgentCommand,
            AgentCommand.status == "queued",
            AgentCommand.dispatched_at.isnot(None),
        )
    if count:
        log.warning("broker epoch marker missing: %d jobs/commands will be sent again", count)
    return count


def redispatch_lost_messages(broker: redis.Redis) -> int:
    """Send again what waits in Postgres as sent long ago but the broker no longer holds.

    Runs at most every half WORKER_LOST_REDELIVERY_S (a lock key in the broker): it reads
    the queues, which costs as much as the backlog is long.
    """
    settings = config.current()
    every = max(1, int(settings.worker_lost_redelivery_s / 2))
    if not broker.set(f"{settings.channel_prefix}:lost-check", 1, nx=True, ex=every):
        return 0
    stale = _now() - timedelta(seconds=settings.worker_lost_redelivery_s)
    with db.transaction() as conn:
        waiting = {
            str(i): ("job", i)
            for i in conn.execute(
                select(Job.id).where(Job.status.in_(_WAITING), Job.dispatched_at < stale)
            ).scalars()
        }
        waiting.update(
            (str(i), ("command", i))
            for i in conn.execute(
                select(AgentCommand.id).where(
                    AgentCommand.status == "queued", AgentCommand.dispatched_at < stale
                )
            ).scalars()
        )
    if not waiting:
        return 0
    held = broker_state.held_task_ids(broker, [dispatch.JOBS_QUEUE, dispatch.AGENTS_QUEUE])
    lost = [waiting[i] for i in waiting.keys() - held]
    with db.transaction() as conn:
        for what, table in (("job", Job), ("command", AgentCommand)):
            ids = [row_id for kind, row_id in lost if kind == what]
            if ids:
                _mark_unsent(conn, table, table.id.in_(ids), table.dispatched_at < stale)
    if lost:
        log.warning("broker lost %d messages (%s): sending them again", len(lost), lost[:5])
    return len(lost)


def run_all(broker: redis.Redis | None) -> dict:
    """One pass of every sweep, each isolated from the others' failures."""
    grace = config.current().outbox_grace_s
    steps = {
        "published": lambda: events.publish_pending(grace),
        "redispatched": lambda: redispatch_if_broker_lost(broker) if broker else 0,
        "lost_messages": lambda: redispatch_lost_messages(broker) if broker else 0,
        "dispatched": dispatch_due,
        "orphans": reap_orphans,
        "timeouts": reap_timeouts,
        "commands_dispatched": commands.dispatch_due,
        "commands_lost": commands.reap_stuck,
        "agents_inactive": heartbeats.mark_inactive,
        "expired": retention.purge_expired,
        # At most every METRICS_COUNTS_INTERVAL_S: the counts /metrics serves from Redis.
        "counted": lambda: telemetry.refresh_counts(config.current().metrics_counts_interval_s),
    }
    done = {}
    for name, step in steps.items():
        try:
            done[name] = step()
        except Exception:  # noqa: BLE001 - one failing sweep must not starve the others
            log.exception("sweep %s failed", name)
            done[name] = None
    return done

"""Counters the workers and publishers keep in Redis, for the API's `/metrics` to expose.

Prometheus histograms and counters must be monotonic per series. In-process counters would
be split over prefork children and api replicas, and lost at each restart, so they are kept
in Redis, one hash per metric under `<CHANNEL_PREFIX>:metrics:`; every API replica's scrape
reads the same numbers. Writes are best effort, after the commit: a Redis that is away
costs a gap in the metrics, never a job. A Redis restarted empty is a counter reset, which
Prometheus' `rate()` handles.

Hand-written: prometheus_client's multiprocess mode shares files on one host only, and
no maintained library keeps Prometheus histograms in Redis.

Jobs and agent commands by status are gauges, but counting them scans their tables, which
grow with history (a million jobs: over 100 ms a scrape). So the sweep counts them at most
every `METRICS_COUNTS_INTERVAL_S` (`refresh_counts`, one process at a time by a Redis key)
and leaves the counts in Redis, where every scrape reads them in one round trip; they are
as old as `orchestra_counts_age_seconds` says. Nothing is written per job to keep them.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime

import redis
from sqlalchemy import func, select

from app import db, pubsub
from app.models import AgentCommand, Event, Job, JobStatus

log = logging.getLogger(__name__)

INF = math.inf
# Upper bounds (seconds): a run is an echo (ms) to an hour-long generation; a wait is ms to
# a backlog of minutes.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, INF)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, INF)
# The `chat` generator's replies: time to its first token, and tokens a second after it.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 120, INF)
TOKEN_RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 500, 1000, INF)
HISTOGRAMS = {
    "job_run_seconds": RUN_BUCKETS,
    "job_queue_wait_seconds": WAIT_BUCKETS,
    "chat_time_to_first_token_seconds": TTFT_BUCKETS,
    "chat_tokens_per_second": TOKEN_RATE_BUCKETS,
}
EVENTS_PUBLISHED = "events_published"
CHAT_TOKENS = "chat_tokens"  # prompt, completion
# The counts the sweep refreshes: {"<a>|<b>": n} and `_at`, when they were counted.
JOB_COUNTS = "job_counts"  # kind|status
COMMAND_COUNTS = "command_counts"  # command|status
_AT = "_at"


def key(metric: str) -> str:
    """The Redis hash of one metric."""
    return f"{pubsub.prefix()}:metrics:{metric}"


def _le(bound: float) -> str:
    return "+Inf" if bound == INF else repr(float(bound))


def observe(label: str, **values: float) -> None:
    """Count one observation of each histogram named in `values`, by one label value (the
    job's kind), in one round trip.

    Stores the bucket each value falls in (not cumulative) and the sums, in one MULTI so a
    scrape never sees one without the other; `read_histograms()` makes them cumulative.
    """
    try:
        pipe = pubsub.client().pipeline(transaction=True)
        add_observation(pipe, label, values)
        pipe.execute()
    except (redis.RedisError, RuntimeError) as exc:
        log.warning("metrics: %s not counted: %s", ", ".join(values), exc)


def add_observation(pipe, label: str, values: dict[str, float]) -> None:
    """Add `observe`'s commands to a pipeline that is a MULTI (the caller's round trip)."""
    for metric, value in values.items():
        bound = next(b for b in HISTOGRAMS[metric] if value <= b)
        pipe.hincrby(key(metric), f"{label}|{_le(bound)}", 1)
        pipe.hincrbyfloat(key(metric), f"{label}|sum", value)


def count_published(pipe, envelopes: list[dict]) -> None:
    """Add 'events published, by type' to the pipeline that publishes them (same round trip)."""
    by_type: dict[str, int] = {}
    for env in envelopes:
        by_type[env["event_type"]] = by_type.get(env["event_type"], 0) + 1
    for event_type, n in by_type.items():
        pipe.hincrby(key(EVENTS_PUBLISHED), event_type, n)


def attempt_values(due_at: datetime, started_at: datetime, ran_s: float | None) -> dict:
    """The histograms of an attempt that waited from `due_at` to `started_at` and ran `ran_s`
    (generator start to its outcome committed; None for a run that lost the job and recorded
    nothing)."""
    values = {"job_queue_wait_seconds": max(0.0, (started_at - due_at).total_seconds())}
    if ran_s is not None:
        values["job_run_seconds"] = max(0.0, ran_s)
    return values


def job_attempt(kind: str, due_at: datetime, started_at: datetime, ran_s: float | None):
    """Count an attempt of a job of `kind` (`attempt_values`) in its own round trip."""
    observe(kind, **attempt_values(due_at, started_at, ran_s))


def chat_reply(ttft_s: float | None, tokens_per_s: float | None, usage: dict | None) -> None:
    """Count one `chat` reply: its time to first token, its rate, its tokens by type."""
    values = {}
    if ttft_s is not None:
        values["chat_time_to_first_token_seconds"] = max(0.0, ttft_s)
    if tokens_per_s is not None:
        values["chat_tokens_per_second"] = max(0.0, tokens_per_s)
    try:
        pipe = pubsub.client().pipeline(transaction=True)
        add_observation(pipe, "chat", values)
        for kind in ("prompt", "completion"):
            if (usage or {}).get(f"{kind}_tokens"):
                pipe.hincrby(key(CHAT_TOKENS), kind, usage[f"{kind}_tokens"])
        pipe.execute()
    except (redis.RedisError, RuntimeError) as exc:
        log.warning("metrics: a chat reply not counted: %s", exc)


def read_histograms(client: redis.Redis, metric: str) -> dict[str, tuple[list, float]]:
    """Per label: ([(le, cumulative count)...] ending with +Inf, sum)."""
    raw = client.hgetall(key(metric))
    per_label: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        label, _, part = field.decode().rpartition("|")
        per_label.setdefault(label, {})[part] = float(value)
    out = {}
    for label, parts in per_label.items():
        running, buckets = 0, []
        for bound in HISTOGRAMS[metric]:
            running += int(parts.get(_le(bound), 0))
            buckets.append((_le(bound), running))
        out[label] = (buckets, parts.get("sum", 0.0))
    return out


def read_counter(client: redis.Redis, metric: str) -> dict[str, int]:
    """A counter hash: {label: count}."""
    return {k.decode(): int(v) for k, v in client.hgetall(key(metric)).items()}


# --- counts by status, refreshed by the sweep --------------------------------------------


def _count(conn, *columns) -> dict[str, int]:
    rows = conn.execute(select(*columns, func.count()).group_by(*columns)).all()
    return {f"{a}|{b}": n for a, b, n in rows}


def refresh_counts(interval_s: float, force: bool = False, more=None) -> bool:
    """Count jobs (by kind and status) and agent commands (by command and status) into
    Redis, unless another process did within `interval_s`; return whether this one did.
    `more(conn)` adds counts of its own, `{metric: {"<label>|...": n}}` (the scheduler's).

    The only full scans `/metrics` needs, run here (a worker, with its longer
    statement_timeout) instead of at every scrape of every replica.
    """
    client = pubsub.client()
    lock = key("counts-lock")
    if not client.set(lock, 1, nx=True, px=max(1, int(interval_s * 1000))) and not force:
        return False
    with db.transaction() as conn:
        counts = {
            JOB_COUNTS: _count(conn, Job.kind, Job.status),
            COMMAND_COUNTS: _count(conn, AgentCommand.command, AgentCommand.status),
            **(more(conn) if more else {}),
        }
    pipe = client.pipeline(transaction=True)  # a scrape sees the old counts or the new ones
    for metric, values in counts.items():
        pipe.delete(key(metric))
        pipe.hset(key(metric), mapping={**values, _AT: repr(time.time())})
    pipe.execute()
    return True


def read_counts(client: redis.Redis, metric: str) -> tuple[list[tuple], float]:
    """The counts last refreshed, as `[(label, ..., n)]`, and their age in seconds (inf:
    never). No label holds a `|` (kinds, statuses, tenant names and keys cannot)."""
    raw = {k.decode(): v.decode() for k, v in client.hgetall(key(metric)).items()}
    at = float(raw.pop(_AT, "-inf"))
    rows = [(*field.split("|"), int(value)) for field, value in sorted(raw.items())]
    return rows, max(0.0, time.time() - at)


def outbox_backlog() -> dict[str, int]:
    """Events not yet published and admitted jobs not yet on the broker: each count reads
    its partial index (`ix_events_unpublished`, `ix_jobs_due`), so it costs what the
    backlog is long, not what the tables hold."""
    waiting = [JobStatus.QUEUED.value, JobStatus.RETRYING.value]
    with db.transaction() as conn:
        unpublished = conn.execute(
            select(func.count()).select_from(Event).where(Event.published_at.is_(None))
        ).scalar_one()
        undispatched = conn.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.dispatched_at.is_(None), Job.admitted_at.isnot(None),
                   Job.status.in_(waiting))
        ).scalar_one()
    return {"unpublished_events": unpublished, "undispatched_jobs": undispatched}

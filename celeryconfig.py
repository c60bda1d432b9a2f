"""Celery's configuration, derived from the one `Settings` (see `app/config.py`)."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

from app.config import Settings

# Task names and queues are named once, in app/outbox/names.py. The system's own work
# (`sweeps`, `heartbeats`) is consumed only by the Procfile's `system` worker: tenants' jobs
# and agent commands (`jobs`, `agents`) can never occupy its pool. Health hooks are plugin
# code, so the heartbeat pass has a queue of its own beside the sweep's.
from app.outbox.names import HARD_LIMIT_GRACE_S, HEARTBEAT, JOBS_QUEUE, QUEUE_OF, SWEEP

# Kombu's Redis transport with one client per channel (see that module); named, not
# imported: kombu imports it when it connects.
TRANSPORT = "workers.transport:Transport"
# What `ssl_cert_reqs=` in a rediss:// URL may say, as redis-py reads it.
_CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_SSL_PATHS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def broker_use_ssl(url: str) -> dict | None:
    """Celery's `broker_use_ssl` for a broker URL: None unless it is `rediss://`.

    Kombu, given a rediss:// URL without SSL options, logs a warning and does not verify the
    server's certificate at all; redis-py (our other clients, on the same URL) verifies it.
    So the URL is read here the way redis-py reads it: certificates are required unless its
    query says `ssl_cert_reqs=none|optional`, and `ssl_ca_certs`, `ssl_certfile`,
    `ssl_keyfile` name the files. No setting beyond the URL is needed.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, not {reqs!r}")
    options = {"ssl_cert_reqs": _CERT_REQS[reqs]}
    options.update({k: query[k] for k in _SSL_PATHS if query.get(k)})
    return options


def broker_transport(url: str) -> str | None:
    """Our Redis transport (`workers/transport.py`: one client per channel) for a Redis
    broker; kombu's own choice for anything else."""
    return TRANSPORT if urlsplit(url).scheme in ("redis", "rediss") else None


def heartbeat_limits(s: Settings) -> tuple[float, float]:
    """Soft and hard time limits of one heartbeat pass: a health hook is plugin code, so a
    pass that hangs is ended (the agents it did not reach get theirs on the next pass)."""
    soft = max(1.0, s.agent_command_timeout_s)
    return soft, soft + HARD_LIMIT_GRACE_S


def from_settings(s: Settings) -> dict:
    """The Celery settings for these Orchestra settings."""
    return {
        "broker_url": s.effective_broker_url,
        "broker_use_ssl": broker_use_ssl(s.effective_broker_url),
        "broker_transport": broker_transport(s.effective_broker_url),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            # Lower numbers are served first on Redis; app/jobs.py maps our 0-9 onto this.
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
            "sep": ":",
            # A message not acked within this is handed out again: how the messages a killed
            # worker had reserved (but not started) come back within WORKER_LOST_REDELIVERY_S.
            # A long run's own message coming back is harmless: its claim finds the job
            # `processing` and drops it. Runs that die mid-way are found by their lease.
            "visibility_timeout": max(1.0, s.worker_lost_redelivery_s / 3),
            # Surviving workers look for such messages this often, on every look.
            "unacked_restore_interval": max(1.0, s.worker_lost_redelivery_s / 6),
            "unacked_restore_throttle": 1,
            # One worker at a time restores, under a lock in Redis. Kombu lets that lock live
            # 5 minutes: a worker killed while holding it would stop every restore that long.
            # Two restorers at once only make duplicates, which we drop.
            "unacked_mutex_expire": max(2, int(s.worker_lost_redelivery_s / 3)),
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
        },
        # Publishing to a dead broker must fail fast: the outbox sweep retries it.
        "task_publish_retry_policy": {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Postgres is the truth: no result backend, results ignored.
        "result_backend": None,
        "task_ignore_result": True,
        # At-least-once: ack after the run, requeue when the worker process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Task events for Flower, which turns them on while it runs (WORKER_TASK_EVENTS): a
        # job's events cost the worker's main process about as much as the job's own work.
        "worker_send_task_events": s.worker_task_events,
        # No task-sent event: it would cost every submit a second Redis publish (measured
        # ~0.5 ms CPU, a fifth of a submit). Flower lists a task from the moment a worker
        # receives it; queued jobs are the API's to show (GET /api/v1/jobs?status=queued).
        "task_send_sent_event": False,
        "task_default_queue": JOBS_QUEUE,
        "task_routes": {task: {"queue": queue} for task, queue in QUEUE_OF.items()},
        "beat_schedule": {
            "sweep": {
                "task": SWEEP,
                "schedule": s.sweep_interval_s,
                # A sweep nobody ran in time is replaced by the next one.
                "options": {"expires": max(5.0, 5 * s.sweep_interval_s)},
            },
            "agent-heartbeats": {
                "task": HEARTBEAT,
                "schedule": s.agent_heartbeat_interval_s,
                "options": {
                    # A pass still proves health a little late; one late beyond this is
                    # dropped, so passes do not pile up while workers are away.
                    "expires": max(5.0, 2 * s.agent_heartbeat_interval_s),
                    "soft_time_limit": heartbeat_limits(s)[0],
                    "time_limit": heartbeat_limits(s)[1],
                },
            },
        },
        # The schedule is two fixed intervals, so beat keeps it in memory: no shelve file (a
        # pickle anyone who can write /tmp could swap) is read or written. A restarted beat
        # runs both at once, which is harmless.
        "beat_scheduler": "celery.beat:Scheduler",
        "worker_hijack_root_logger": False,
    }

"""Celery's configuration, derived from the one `Settings` (see `app/config.py`)."""

from __future__ import annotations

import hashlib
import os
import tempfile

from app.config import Settings
from app.dispatch import AGENTS_QUEUE, JOBS_QUEUE

SWEEP_TASK = "orchestra.sweeps.run"
HEARTBEAT_TASK = "orchestra.agents.heartbeat"
SWEEPS_QUEUE = "sweeps"


def from_settings(s: Settings) -> dict:
    """The Celery settings for these Orchestra settings."""
    beat_file = hashlib.sha1(f"{s.effective_broker_url}{s.channel_prefix}".encode()).hexdigest()
    return {
        "broker_url": s.effective_broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            # Lower numbers are served first on Redis; app.dispatch maps our 0-9 onto this.
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
        # Task events for Flower.
        "worker_send_task_events": True,
        # No task-sent event: it would cost every submit a second Redis publish (measured
        # ~0.5 ms CPU, a fifth of a submit). Flower lists a task from the moment a worker
        # receives it; queued jobs are the API's to show (GET /api/v1/jobs?status=queued).
        "task_send_sent_event": False,
        "task_default_queue": JOBS_QUEUE,
        "task_routes": {
            "orchestra.jobs.*": {"queue": JOBS_QUEUE},
            "orchestra.agents.*": {"queue": AGENTS_QUEUE},
            "orchestra.sweeps.*": {"queue": SWEEPS_QUEUE},
        },
        "beat_schedule": {
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": s.sweep_interval_s,
                # A sweep nobody ran in time is replaced by the next one.
                "options": {"expires": max(5.0, 5 * s.sweep_interval_s)},
            },
            "agent-heartbeats": {
                "task": HEARTBEAT_TASK,
                "schedule": s.agent_heartbeat_interval_s,
                # A pass still proves health a little late; one late beyond this is dropped,
                # so passes do not pile up while workers are away.
                "options": {"expires": max(5.0, 2 * s.agent_heartbeat_interval_s)},
            },
        },
        "beat_schedule_filename": os.path.join(
            tempfile.gettempdir(), f"orchestra-beat-{beat_file}"
        ),
        "worker_hijack_root_logger": False,
    }

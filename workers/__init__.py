"""The Celery app (`celery -A workers worker`) and the signals that wire the domain in."""

from __future__ import annotations

import logging

from celery import Celery, current_app, signals

import celeryconfig
import tasks
from app import bootstrap, db, logs
from app.config import Settings
from app.outbox.names import HEARTBEAT, SWEEP
from workers.transport import batch_sender


def make_celery(settings: Settings) -> Celery:
    """A Celery app for these settings, with Orchestra's tasks registered."""
    celery = Celery("orchestra", include=["tasks.jobs", "tasks.agents", "tasks.sweeps"])
    celery.conf.update(celeryconfig.from_settings(settings))
    # The worker signals wire the domain with the settings of the app that runs, not the
    # environment's: an embedded test worker runs against its test database.
    celery.orchestra_settings = settings
    return celery


def _wire(celery: Celery) -> None:
    settings = getattr(celery, "orchestra_settings", None) or Settings.from_env()
    bootstrap.init(settings, sender=celery.send_task, role="worker", batch=batch_sender(celery))


class _QuietSweeps(logging.Filter):
    """Drop the per-run INFO lines of the periodic sweep and heartbeat passes; their
    warnings still show."""

    _PERIODIC = (SWEEP, HEARTBEAT)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(task in message for task in self._PERIODIC)


# The app `celery -A workers` finds; building it reads the environment and connects nothing.
app = make_celery(Settings.from_env())


def _settings() -> Settings:
    return getattr(current_app, "orchestra_settings", None) or Settings.from_env()


@signals.setup_logging.connect
@signals.celeryd_init.connect
def _setup_logging(**_):
    """Our format instead of Celery's, for the worker and beat; the sweep's per-run lines
    are dropped.

    A `setup_logging` receiver stops Celery configuring the root logger itself;
    `celeryd_init` comes earlier, before the worker's start-up checks, whose warnings
    (running as root, say) would otherwise be bare text lines.
    """
    bootstrap.configure_logging(_settings(), filters=(_QuietSweeps(),))


@signals.worker_init.connect
def _init_worker(sender=None, **_):
    """The worker's main process: the domain (for tasks run in-process); in a gevent pool
    (the `io` worker) queries that yield to the other greenlets."""
    if tasks.green():
        db.cooperative_waits()
    _wire(sender.app if sender is not None else current_app)


@signals.task_prerun.connect
def _bind_task(task_id=None, task=None, kwargs=None, **_):
    """Every line a task logs carries its ids and the correlation id its message brought."""
    kwargs, request = kwargs or {}, task.request
    task.request.orchestra_log_token = logs.bind(
        task_id=task_id,
        job_id=kwargs.get("job_id"),
        command_id=kwargs.get("command_id"),
        agent_id=getattr(request, "orchestra_agent_id", None),
        correlation_id=getattr(request, "orchestra_correlation_id", None),
    )


@signals.task_postrun.connect
def _unbind_task(task=None, **_):
    """The next task of this process starts with a clean context."""
    token = getattr(task.request, "orchestra_log_token", None)
    if token is not None:
        try:
            logs.reset(token)
        except ValueError:  # bound in another context (a pool that moved threads): let it be
            pass


@signals.worker_process_init.connect
def _init_child(**_):
    """Each pool child: pooled connections must not cross the fork, so start afresh."""
    db.dispose_after_fork()
    _wire(current_app)

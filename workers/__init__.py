"""The Celery app (`celery -A workers worker`) and the signals that wire the domain in."""

from __future__ import annotations

import logging

from celery import Celery, current_app, signals

import celeryconfig
from app import bootstrap, db
from app.config import Settings


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
    bootstrap.init(settings, sender=celery.send_task)


class _QuietSweeps(logging.Filter):
    """Drop the per-run INFO lines of the periodic sweep and heartbeat passes; their
    warnings still show."""

    _PERIODIC = (celeryconfig.SWEEP_TASK, celeryconfig.HEARTBEAT_TASK)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(task in message for task in self._PERIODIC)


# The app `celery -A workers` finds; building it reads the environment and connects nothing.
app = make_celery(Settings.from_env())


@signals.worker_init.connect
def _init_worker(sender=None, **_):
    """The worker's main process: logging and the domain (for tasks run in-process)."""
    celery = sender.app if sender is not None else current_app
    bootstrap.configure_logging(celery.orchestra_settings.log_level)
    _wire(celery)


@signals.after_setup_logger.connect
def _quiet_sweeps(logger=None, **_):
    """Celery logs every task it receives and finishes; the sweep would flood the log."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(_QuietSweeps())


@signals.worker_process_init.connect
def _init_child(**_):
    """Each pool child: pooled connections must not cross the fork, so start afresh."""
    db.dispose_after_fork()
    _wire(current_app)

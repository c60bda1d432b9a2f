"""Wire the domain for one process: settings, database, Redis and the outbox's seam to Celery.

Importing it also registers what builds on jobs (`app.agents.commands`: the hook that ends
an execution with its job, the agent commands the outbox sends), so every process that
bootstraps moves jobs and sweeps commands alike, whichever modules it imported itself.
"""

from __future__ import annotations

import logging

from app import config, db, logs, outbox, pubsub
from app.agents import commands  # noqa: F401 - registers the job hook and the command sendable
from app.config import Settings


def init(settings: Settings, sender=None, role: str = "cli", batch=None) -> Settings:
    """Called once by each entry point (API, relay, worker, CLI), never at import.

    `role` (`api`, `relay`, `worker`, `cli`) picks the Postgres timeouts of the process;
    `sender` and `batch` are the outbox's seam to Celery (`app.outbox.configure`).
    """
    config.install(settings)
    statement_s, lock_s = settings.db_timeouts(role)
    db.init(
        settings.database_url,
        timeout_s=max(1.0, settings.dependency_timeout_s),
        statement_timeout_s=statement_s,
        lock_timeout_s=lock_s,
    )
    pubsub.init(settings.redis_url, settings.channel_prefix, settings.dependency_timeout_s)
    if sender is not None:
        outbox.configure(sender, batch)
    return settings


def configure_logging(settings: Settings, filters: tuple[logging.Filter, ...] = ()) -> None:
    """One log format for every process: JSON lines (or text) with the bound context."""
    logs.configure(settings.log_level, settings.log_format, filters)

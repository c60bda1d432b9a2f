"""The engine and transactions: one engine per process, rebuilt after a fork."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, select
from sqlalchemy.exc import DBAPIError, OperationalError

from app.errors import Unavailable

log = logging.getLogger(__name__)

_engine: Engine | None = None
_url: str | None = None


def init(database_url: str, timeout_s: float = 5.0) -> Engine:
    """Create this process's engine (idempotent for the same URL)."""
    global _engine, _url
    if _engine is not None and _url == database_url:
        return _engine
    _engine = create_engine(
        database_url,
        # A restarted Postgres leaves dead connections in the pool: test each on checkout.
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": max(1, int(timeout_s))},
    )
    _url = database_url
    return _engine


def engine() -> Engine:
    """This process's engine; `init()` must have run."""
    if _engine is None:
        raise RuntimeError("app.db.init() was not called in this process")
    return _engine


def dispose_after_fork() -> None:
    """Drop pooled connections inherited from a parent process (they must not be shared)."""
    if _engine is not None:
        _engine.dispose(close=False)


@contextmanager
def transaction() -> Iterator[Connection]:
    """One transaction: commits on success, rolls back on any error.

    A lost or refused connection surfaces as `Unavailable`, so adapters answer 503
    (HTTP) or retry (Celery) instead of treating it as a bug.
    """
    try:
        with engine().begin() as conn:
            yield conn
    except OperationalError as exc:
        log.warning("database unavailable: %s", exc.orig)
        raise Unavailable("database", str(exc.orig).strip()) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("database", str(exc.orig).strip()) from exc
        raise


def ids_where(column, *conditions, limit: int) -> list:
    """The values of `column` (an id) of up to `limit` rows matching `conditions`, in a short
    read of their own: sweeps pick candidates here, then lock and re-check each one."""
    with transaction() as conn:
        return list(conn.execute(select(column).where(*conditions).limit(limit)).scalars())

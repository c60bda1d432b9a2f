"""The engine and transactions: one engine per process, rebuilt after a fork."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import ARRAY, Connection, Engine, bindparam, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from app.errors import Unavailable

log = logging.getLogger(__name__)

_engine: Engine | None = None
_identity: tuple | None = None
# A pooled connection idle longer than this is tested before use (see `_ping_if_idle`).
IDLE_PING_S = 1.0


def session_options(statement_timeout_s: float, lock_timeout_s: float) -> str:
    """libpq's `options` that set both timeouts on every connection at its start (no extra
    round trip, and a pooled connection cannot lose them)."""
    return (
        f"-c statement_timeout={max(0, round(statement_timeout_s * 1000))} "
        f"-c lock_timeout={max(0, round(lock_timeout_s * 1000))}"
    )


def cooperative_waits() -> None:
    """Have psycopg wait for Postgres through the `select` module: for a process whose
    `select` gevent patched (the relay, the `io` worker), so a query yields to the other
    greenlets.

    psycopg chooses its wait function when first imported: after gevent patched `select`
    the one built on `select`, else its C one, which holds every greenlet while a query
    runs. A process that imported it earlier gets the `select` one here.
    """
    from psycopg import waiting

    if waiting.wait is getattr(waiting, "wait_c", None):
        waiting.wait = waiting.wait_select


def init(
    database_url: str,
    timeout_s: float = 5.0,
    statement_timeout_s: float = 600.0,
    lock_timeout_s: float = 30.0,
) -> Engine:
    """Create this process's engine (idempotent for the same URL and timeouts).

    `statement_timeout_s` and `lock_timeout_s` bound every statement and every lock wait:
    Postgres cancels what outlives them, and `transaction()` makes that `Unavailable`.
    """
    global _engine, _identity
    options = session_options(statement_timeout_s, lock_timeout_s)
    if _engine is not None and _identity == (database_url, options):
        return _engine
    if _engine is not None:
        _engine.dispose()  # the same process re-wired with other timeouts (tests)
    _engine = create_engine(
        database_url,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": max(1, int(timeout_s)), "options": options},
    )
    _identity = (database_url, options)
    event.listen(_engine.pool, "checkin", _idle_since)
    event.listen(_engine.pool, "checkout", _ping_if_idle)
    return _engine


def _idle_since(_dbapi_conn, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
    """Test a pooled connection before use only if it sat idle past `IDLE_PING_S`.

    A restarted Postgres leaves dead connections in the pool; `pool_pre_ping` would find
    them by a round trip on every checkout, which a busy process pays several times per job.
    A connection back in the pool within the last second was alive then; if Postgres died
    since, its first statement fails, SQLAlchemy invalidates the whole pool, and the caller
    sees `Unavailable` (a 503, a task retried) once. This is SQLAlchemy's pessimistic
    disconnect recipe (a checkout listener raising `DisconnectionError`, which makes the pool
    connect anew), with the dialect's own ping, kept to connections that were idle.
    """
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since <= IDLE_PING_S:
        return
    try:
        _engine.dialect.do_ping(dbapi_conn)
    except _engine.dialect.loaded_dbapi.Error as exc:
        raise DisconnectionError("a pooled connection did not answer its ping") from exc


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
    (HTTP) or retry (Celery) instead of treating it as a bug; so does a statement Postgres
    cancelled at `statement_timeout` or `lock_timeout` (psycopg raises both as
    `OperationalError`: QueryCanceled, LockNotAvailable).
    """
    with _unavailable_on_failure():
        with engine().begin() as conn:
            yield conn


def read_scalar(statement, params: dict | None = None):
    """The one value of a read of one statement, outside a transaction (autocommit): one
    round trip, where `transaction()` takes three (BEGIN, the statement, COMMIT)."""
    with _unavailable_on_failure():
        with engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(statement, params or {}).scalar_one()


def execute_autocommit(statement, params: dict | None = None) -> list:
    """The rows of one statement run outside a transaction (autocommit: it commits alone, in
    one round trip)."""
    with _unavailable_on_failure():
        with engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(statement, params or {}).all()


@contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    try:
        yield
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


def insert_rows(table, rows: list[dict]):
    """`INSERT INTO table (c1, c2, ...) SELECT * FROM unnest(:c1, :c2, ...)`: many rows (each
    with the same keys) as one array parameter per column; the caller adds `ON CONFLICT` or
    `RETURNING` as to any Postgres `insert`.

    Hand-written because SQLAlchemy's own many-row INSERT (insertmanyvalues) sends a
    statement with a parameter per value, which psycopg parses again at every call (too long
    for psycopg's cache: a quarter of a 1,000-job batch's CPU went there); this one has a
    parameter per column, so it is parsed once and prepared on the server like any other.
    """
    columns = list(rows[0])
    arrays = [
        # One dimension: a value that is itself a list (JSON) stays one element.
        bindparam(f"rows_{name}", [row[name] for row in rows],
                  type_=ARRAY(table.c[name].type, dimensions=1))
        for name in columns
    ]
    given = func.unnest(*arrays).table_valued(*columns).render_derived()
    return insert(table).from_select(columns, select(*(given.c[name] for name in columns)))

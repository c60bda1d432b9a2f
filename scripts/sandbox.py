"""Throw-away resources for test and bench runs: a database, a Redis db number, free ports."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
CLAIM_TTL_S = 3 * 3600


def admin_connection(database_url: str):
    """An autocommit connection to the server's `postgres` db (CREATE/DROP DATABASE need it)."""
    url = make_url(database_url)
    conn = psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
        connect_timeout=5,
    )
    conn.autocommit = True
    return conn


def _execute(database_url: str, statement) -> None:
    conn = admin_connection(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_database(base_url: str, name: str) -> str:
    """Create database `name` on the server of `base_url`; return its SQLAlchemy URL."""
    _execute(base_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str) -> None:
    """Drop the URL's database, disconnecting whoever is still in it (a killed worker, say)."""
    name = make_url(database_url).database
    _execute(
        database_url,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
    )


def migrate(database_url: str) -> None:
    """Bring the schema to head through Alembic, as `make db` does (quietly)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def with_db(redis_url: str, number: int) -> str:
    """`redis_url` pointing at db `number`."""
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{number}"))


def claim_redis_db(redis_url: str, owner: str, numbers: range = range(1, 16)) -> str:
    """The URL of a Redis db no other run holds, flushed; the claims live in db 0."""
    lock = redis.Redis.from_url(with_db(redis_url, 0))
    for number in numbers:
        if lock.set(f"orchestra-sandbox:db:{number}", owner, nx=True, ex=CLAIM_TTL_S):
            url = with_db(redis_url, number)
            redis.Redis.from_url(url).flushdb()
            return url
    raise RuntimeError(f"every Redis db in {numbers} is claimed by another run")


def release_redis_db(url: str, owner: str) -> None:
    """Flush the db and give the claim back."""
    redis.Redis.from_url(url).flushdb()
    number = int(urlsplit(url).path.strip("/") or 0)
    lock = redis.Redis.from_url(with_db(url, 0))
    if lock.get(f"orchestra-sandbox:db:{number}") == owner.encode():
        lock.delete(f"orchestra-sandbox:db:{number}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

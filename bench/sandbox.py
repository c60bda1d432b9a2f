"""A private sandbox for one bench run: its own database, Redis db, channel prefix and ports."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from app.config import Settings
from scripts import sandbox as resources
from scripts.sandbox import ROOT, free_port

__all__ = ["ROOT", "log", "sandbox"]

DB_PREFIX = "orchestra_bench_"
# Redis dbs the bench may borrow (tests take the low numbers first).
REDIS_DBS = range(10, 16)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the figures."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextmanager
def sandbox() -> Iterator[Settings]:
    """Settings for a fresh database, Redis db and channel prefix; all removed on exit."""
    base = Settings.from_env()
    token = secrets.token_hex(4)
    name = DB_PREFIX + token
    database_url = resources.create_database(base.database_url, name)
    try:
        redis_url = resources.claim_redis_db(base.redis_url, name, REDIS_DBS)
        try:
            log(f"database {name}, redis {redis_url}, channel prefix {name}")
            resources.migrate(database_url)
            yield base.with_(
                database_url=database_url,
                redis_url=redis_url,
                broker_url="",  # the broker is the borrowed Redis db too
                channel_prefix=name,
                bind_host="127.0.0.1",
                api_port=free_port(),
                relay_port=free_port(),
                flower_port=free_port(),
                # The swarm's thousands of clients share one key.
                relay_max_sockets_per_key=100_000,
            )
        finally:
            resources.release_redis_db(redis_url, name)
    finally:
        resources.drop_database(database_url)
        log(f"dropped {name}, released the redis db")

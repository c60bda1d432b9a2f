"""Celery with its SQLAlchemy result backend on Postgres and `task_track_started`: every job's
state (STARTED, then SUCCESS) in the `celery_taskmeta` table; the broker is Redis.

Worker: `celery -A bench.peers.celery_pg worker -c 2` (prefork, as Orchestra's). Round trip:
`AsyncResult.get(interval=0.005)`; its default interval (0.5 s) would measure the polling.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from types import SimpleNamespace

from celery import Celery, group

from bench.peers import driver

QUEUE = "peers_celery_pg"
TASK = "peers.celery_pg.noop"
WORKERS = f"celery -A bench.peers.celery_pg worker -c 2 -Q {QUEUE} -n celerypg-$$@%h -l WARNING"


def make_app(database_url: str, redis_url: str) -> Celery:
    """The app on the system's Redis db, results in its database (psycopg2, as ours)."""
    celery = Celery("peers_celery_pg")
    celery.conf.update(
        broker_url=redis_url,
        broker_connection_retry_on_startup=True,
        result_backend="db+" + database_url,
        task_track_started=True,
        task_default_queue=QUEUE,
        task_acks_late=True,  # as Orchestra's tasks and the raw baseline
        worker_prefetch_multiplier=1,
    )

    @celery.task(name=TASK)
    def noop() -> None:
        """Nothing: the backend stores its state."""

    return celery


def _from_env() -> Celery:
    return make_app(os.environ["PEER_DATABASE_URL"], os.environ["PEER_REDIS"])


# `celery -A bench.peers.celery_pg` finds this; the harness imports the module without env.
app = _from_env() if "PEER_DATABASE_URL" in os.environ else None


def setup(ctx) -> None:
    """The backend's tables, made once before the workers (two children would race)."""
    make_app(ctx.database_url, ctx.redis_url).backend.ResultSession().close()


def progress(ctx) -> tuple:
    """Done, first and last finish: the STARTED time is overwritten by the SUCCESS one."""
    from bench.peers.method import sql_one

    done, first, last = sql_one(
        ctx,
        "SELECT count(*), extract(epoch FROM min(date_done)), extract(epoch FROM max(date_done))"
        " FROM celery_taskmeta WHERE status = 'SUCCESS'",
    )
    return done, first, last, False


@asynccontextmanager
async def session():
    celery = _from_env()
    noop = celery.tasks[TASK]

    async def one() -> None:
        noop.apply_async()

    async def many(k: int) -> None:
        group(noop.s() for _ in range(k)).apply_async()

    async def trip() -> None:
        noop.apply_async().get(interval=driver.POLL_S, timeout=30)

    try:
        yield SimpleNamespace(one=one, many=many, trip=trip)
    finally:
        celery.close()


if __name__ == "__main__":
    driver.main(session)

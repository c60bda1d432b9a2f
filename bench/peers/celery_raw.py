"""Raw Celery, no state at all: the ratio's baseline of the peers table. The no-op records
its own first start and last finish in the system's Redis db (a counter and two times),
since Celery keeps none; the round trip uses a Redis result backend (`get()`, pub/sub).
"""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

from celery import Celery, group

from bench.peers import driver

QUEUE = "peers_celery_raw"
TASK, TRIP = "peers.raw.noop", "peers.raw.trip"
WORKERS = f"celery -A bench.peers.celery_raw worker -c 2 -Q {QUEUE} -n celeryraw-$$@%h -l WARNING"
DONE, FIRST, LAST = "peers:raw:done", "peers:raw:first", "peers:raw:last"


def make_app(redis_url: str) -> Celery:
    celery = Celery("peers_celery_raw")
    celery.conf.update(
        broker_url=redis_url,
        broker_connection_retry_on_startup=True,
        result_backend=redis_url,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
    )
    stamps: dict = {}

    @celery.task(name=TASK)
    def noop() -> None:
        """Stamp the run in Redis: the only record raw Celery has of it."""
        import redis

        client = stamps.get("redis") or stamps.setdefault("redis", redis.Redis.from_url(redis_url))
        started = time.time()
        pipe = client.pipeline(transaction=False)
        pipe.set(FIRST, started, nx=True)
        pipe.set(LAST, time.time())
        pipe.incr(DONE)
        pipe.execute()

    @celery.task(name=TRIP, ignore_result=False)
    def trip() -> int:
        return 1

    return celery


app = make_app(os.environ["PEER_REDIS"]) if "PEER_REDIS" in os.environ else None


def progress(ctx) -> tuple:
    done, first, last = ctx.redis.mget(DONE, FIRST, LAST)
    return int(done or 0), float(first or 0) or None, float(last or 0) or None, True


@asynccontextmanager
async def session():
    celery = make_app(os.environ["PEER_REDIS"])
    noop, trip_task = celery.tasks[TASK], celery.tasks[TRIP]

    async def one() -> None:
        noop.apply_async()

    async def many(k: int) -> None:
        group(noop.s() for _ in range(k)).apply_async()

    async def trip() -> None:
        result = trip_task.apply_async()
        result.get(timeout=30)
        result.forget()

    try:
        yield SimpleNamespace(one=one, many=many, trip=trip)
    finally:
        celery.close()


if __name__ == "__main__":
    driver.main(session)

"""The baseline: a raw Celery no-op task on the same Redis db (`celery -A bench.noop worker`).

The task only records that it ran (INCR a counter, optionally RPUSH a flag), so what the
baseline measures is Celery and Redis alone, configured as Orchestra configures its tasks:
results ignored, acks late, prefetch 1. A second task, `bench.noop_result`, stores its
result in a Redis result backend: the round trip of the issue is `send_task(...).get()`.
"""

from __future__ import annotations

import json
import time

import redis
from celery import Celery

from app.config import Settings

TASK = "bench.noop"
RESULT_TASK = "bench.noop_result"
SLEEP_TASK = "bench.sleep"
QUEUE = "bench_noop"
# The same concurrency and log level as the Orchestra worker it is compared with.
WORKER_COMMAND = f"celery -A bench.noop worker -c 2 -Q {QUEUE} -n noop-$$@%h --loglevel INFO"

_clients: dict[str, redis.Redis] = {}


def _redis(url: str) -> redis.Redis:
    """One Redis client per URL and process (redis-py resets its pool after a fork)."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url)
    return client


def make_app(redis_url: str, results: bool = False) -> Celery:
    """A bare Celery app on `redis_url` with the no-op tasks registered.

    `results`: with a Redis result backend. The producer of the drain and send figures has
    none, so that sending costs what it costs Orchestra (which keeps no Celery results).
    """
    celery = Celery("bench_noop")
    celery.conf.update(
        broker_url=redis_url,
        broker_connection_retry_on_startup=True,
        result_backend=redis_url if results else None,
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
    )

    @celery.task(name=TASK)
    def noop(counter: str, flag: str | None = None) -> None:
        """Count this run; push `flag` when a caller waits for this very task."""
        pipe = _redis(redis_url).pipeline(transaction=False)
        pipe.incr(counter)
        if flag:
            pipe.rpush(flag, 1)
        pipe.execute()

    @celery.task(name=SLEEP_TASK)
    def sleep(log: str, tag: str, sent: float, seconds: float) -> None:
        """Sleep `seconds`; push `[tag, sent, started, finished]` (epoch seconds) to `log`,
        for the noisy-neighbour section's raw FIFO (one queue, in sending order)."""
        started = time.time()
        time.sleep(seconds)
        _redis(redis_url).rpush(log, json.dumps([tag, sent, started, time.time()]))

    @celery.task(name=RESULT_TASK, ignore_result=False)
    def noop_result() -> int:
        """Nothing: its stored result tells the caller it ran."""
        return 1

    return celery


def send(producer: Celery, counter: str, flag: str | None = None) -> None:
    """Put one no-op on the broker, the way the outbox sends a job (`send_task`)."""
    producer.send_task(TASK, args=[counter, flag], queue=QUEUE)


# `celery -A bench.noop` looks for this; the bench passes REDIS_URL like to every process.
app = make_app(Settings.from_env().redis_url, results=True)

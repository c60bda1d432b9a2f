"""The baseline side: raw Celery and a no-op task, measured the way the Orchestra side is."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis
from celery import Celery
from celery.exceptions import TimeoutError as ResultTimeout

from app.config import Settings
from bench import noop
from bench.measure import throughput, timed, wait_until
from bench.procs import Proc


@dataclass
class Baseline:
    """The producer app and a Redis client on the bench's db."""

    producer: Celery
    redis: redis.Redis
    # With a Redis result backend, for the round trip only.
    results: Celery


def connect(settings: Settings) -> Baseline:
    """The baseline's producer, on the same broker as Orchestra's."""
    return Baseline(
        noop.make_app(settings.redis_url),
        redis.Redis.from_url(settings.redis_url),
        noop.make_app(settings.redis_url, results=True),
    )


def _counter(label: str) -> str:
    return f"bench:{label}:{uuid.uuid4().hex}"


def _count(b: Baseline, counter: str) -> int:
    return int(b.redis.get(counter) or 0)


def drain(b: Baseline, n: int, worker: Proc, timeout_s: float, label: str) -> dict:
    """Send `n` no-ops as fast as one process can and time until the worker ran them all."""
    counter = _counter(label)
    start = time.perf_counter()
    for _ in range(n):
        noop.send(b.producer, counter)
    end = wait_until(
        lambda: _count(b, counter) >= n, timeout_s, f"{n} no-op tasks", check=worker.check
    )
    return throughput(n, start, end)


def round_trips(b: Baseline, n: int, worker: Proc) -> list[float]:
    """Latencies of `n` sequential no-ops, `send_task(...).get()` on a Redis result backend."""

    def one() -> None:
        result = b.results.send_task(noop.RESULT_TASK, queue=noop.QUEUE)
        try:
            result.get(timeout=30)
        except ResultTimeout:
            worker.check()
            raise
        finally:
            result.forget()  # the stored result key is not left behind

    return timed(one, n)


def send_latencies(b: Baseline, n: int, warm: int) -> list[float]:
    """Latencies of `send_task` alone (nobody consumes: the submit path only)."""
    counter = _counter("send")
    timed(lambda: noop.send(b.producer, counter), warm)
    latencies = timed(lambda: noop.send(b.producer, counter), n)
    # Nobody will run these: drop them rather than leave them queued.
    b.redis.delete(noop.QUEUE)
    return latencies


def close(b: Baseline) -> None:
    """Release the producer's and the client's connections."""
    b.producer.close()
    b.results.close()
    b.redis.close()

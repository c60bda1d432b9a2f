"""Timing helpers shared by the Orchestra side and the baseline side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

# Completion is detected by polling; this bounds the error of a throughput figure
# (a few ms over runs of a second or more) at a negligible cost to the machine.
POLL_S = 0.005


def latency_stats(samples_s: list[float]) -> dict:
    """p50, p90, p99, mean and max of latencies in seconds, reported in milliseconds."""
    q = statistics.quantiles(samples_s, n=100, method="inclusive")
    return {
        "n": len(samples_s),
        "p50_ms": q[49] * 1000,
        "p90_ms": q[89] * 1000,
        "p99_ms": q[98] * 1000,
        "mean_ms": statistics.fmean(samples_s) * 1000,
        "max_ms": max(samples_s) * 1000,
    }


def wait_until(
    done: Callable[[], bool],
    timeout_s: float,
    what: str,
    check: Callable[[], None] | None = None,
) -> float:
    """Poll `done` until true; return `perf_counter()` at that moment, or raise on timeout.

    `check` runs between polls (it raises if a process we wait on has died).
    """
    deadline = time.perf_counter() + timeout_s
    while True:
        if done():
            return time.perf_counter()
        if check is not None:
            check()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Call `fn` `n` times in a row; the duration of each call in seconds."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def throughput(count: int, start: float, end: float) -> dict:
    """Items per second between two `perf_counter()` readings."""
    elapsed = end - start
    return {"n": count, "seconds": elapsed, "per_s": count / elapsed}

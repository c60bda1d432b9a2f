"""The client side of one peer, run as `python -m bench.peers.<module> enqueue|trips ...`.

Standard library only: it runs in the peer's own interpreter (Python 3.12 for Oban). A
module gives `main()` an async context manager yielding a session with three coroutines:
`one()` enqueues a no-op, `many(k)` enqueues k in the library's bulk call, `trip()`
enqueues one and waits for its result the library's own way. The answer is one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

# Where a library has no waiter of its own, its job-status call is polled this often (the
# bench's own completion polling, bench/measure.py, uses the same period).
POLL_S = 0.005


async def _enqueue(s, single: int, bulk: int, batch: int) -> dict:
    """Single enqueues timed one by one, then `bulk` jobs in calls of `batch`."""
    durations = []
    cpu0 = time.process_time()
    for _ in range(single):
        t0 = time.perf_counter()
        await s.one()
        durations.append(time.perf_counter() - t0)
    cpu1 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, bulk, batch):
        await s.many(min(batch, bulk - i))
    bulk_s = time.perf_counter() - t0
    return {
        "single_s": durations,
        "single_cpu_s": cpu1 - cpu0,
        "bulk_n": bulk,
        "bulk_batch": batch,
        "bulk_s": bulk_s,
        "bulk_cpu_s": time.process_time() - cpu1,
    }


async def _trips(s, n: int, warm: int) -> dict:
    """`warm` round trips not counted, then `n` timed, one job at a time."""
    for _ in range(warm):
        await s.trip()
    durations = []
    for _ in range(n):
        t0 = time.perf_counter()
        await s.trip()
        durations.append(time.perf_counter() - t0)
    return {"trips_s": durations}


async def _run(session, command: str, args: list[int]) -> dict:
    async with session() as s:
        if command == "enqueue":
            return await _enqueue(s, *args)
        if command == "trips":
            return await _trips(s, *args)
    raise SystemExit(f"unknown command {command!r}: expected enqueue or trips")


def main(session) -> None:
    """`enqueue SINGLE BULK BATCH` or `trips N WARM`; prints the answer as one JSON line."""
    command, *args = sys.argv[1:]
    out = asyncio.run(_run(session, command, [int(a) for a in args]))
    print(json.dumps(out), flush=True)

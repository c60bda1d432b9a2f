"""PgQueuer 1.6 (asyncpg): jobs in `pgqueuer`, deleted when done; each step in `pgqueuer_log`
(`picked`, `successful`, stamped by Postgres when the worker's buffer is flushed). Two
`pgq run` processes, each dequeuing in batches of 10 (its default). Round trip: the
library's `CompletionWatcher.wait_for` (LISTEN/NOTIFY, with a debounce of its own).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from types import SimpleNamespace

from bench.peers import driver

ENTRYPOINT = "noop"
# `pgq run bench.peers.pgqueuer_:factory` as the library's own `pgqueuer.run` does it: the
# 1.6 CLI fails at start (`--log-level` reaches its logger setup as a str, not the enum).
WORKER = "python -m bench.peers.pgqueuer_ worker"


@asynccontextmanager
async def factory():
    """What `pgqueuer.run` enters: a PgQueuer on one asyncpg connection, with the no-op."""
    import asyncpg
    from pgqueuer import PgQueuer

    conn = await asyncpg.connect(os.environ["PEER_DSN"])
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job) -> None:
        """Nothing: the log rows are its state."""

    try:
        yield pgq
    finally:
        await conn.close()


def setup(ctx) -> None:
    """The schema, by the library's own command."""
    import subprocess

    subprocess.run(
        ["pgq", "--pg-dsn", ctx.dsn, "install"], env=ctx.env, check=True, capture_output=True
    )


def progress(ctx) -> tuple:
    from bench.peers.method import sql_one

    done, first, last = sql_one(
        ctx,
        "SELECT count(*) FILTER (WHERE status = 'successful'),"
        " extract(epoch FROM min(created) FILTER (WHERE status = 'picked')),"
        " extract(epoch FROM max(created) FILTER (WHERE status = 'successful'))"
        " FROM pgqueuer_log",
    )
    return done, first, last, True


@asynccontextmanager
async def session():
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries
    from pgqueuer.core.completion import CompletionWatcher

    conn = await asyncpg.connect(os.environ["PEER_DSN"])
    drv = AsyncpgDriver(conn)
    queries = Queries(drv)
    try:
        async with CompletionWatcher(drv, queries=queries) as watcher:

            async def one() -> None:
                await queries.enqueue(ENTRYPOINT, None)

            async def many(k: int) -> None:
                await queries.enqueue([ENTRYPOINT] * k, [None] * k, [0] * k)

            async def trip() -> None:
                (job_id,) = await queries.enqueue(ENTRYPOINT, None)
                status = await watcher.wait_for(job_id)
                if status != "successful":
                    raise RuntimeError(f"job {job_id} ended {status}")

            yield SimpleNamespace(one=one, many=many, trip=trip)
    finally:
        await conn.close()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["worker"]:
        import asyncio

        import pgqueuer

        asyncio.run(pgqueuer.run(factory, batch_size=10))
    else:
        driver.main(session)

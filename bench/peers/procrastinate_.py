"""Procrastinate 3 (psycopg 3): jobs in `procrastinate_jobs`, each change in
`procrastinate_events` (`started`, `succeeded`, with Postgres' time); LISTEN/NOTIFY wakes
the workers. Two `procrastinate worker` processes, each at its default concurrency (1).
Round trip: `job_manager.get_job_status_async` polled every 5 ms (it has no waiter).
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from types import SimpleNamespace

import procrastinate

from bench.peers import driver

APP = "bench.peers.procrastinate_.app"
WORKER = f"procrastinate --app={APP} worker"

# `procrastinate --app=...` imports this; the connector connects only when the app opens.
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("PEER_DSN", ""))
)


@app.task(name="noop")
async def noop() -> None:
    """Nothing: the job's row and events are its state."""


def setup(ctx) -> None:
    """The schema, by the library's own command."""
    import subprocess

    subprocess.run(
        ["procrastinate", f"--app={APP}", "schema", "--apply"],
        env=ctx.env,
        check=True,
        capture_output=True,
    )


def progress(ctx) -> tuple:
    from bench.peers.method import sql_one

    done, first, last = sql_one(
        ctx,
        "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'),"
        " (SELECT extract(epoch FROM min(at)) FROM procrastinate_events WHERE type = 'started'),"
        " (SELECT extract(epoch FROM max(at)) FROM procrastinate_events"
        "  WHERE type = 'succeeded')",
    )
    return done, first, last, True


@asynccontextmanager
async def session():
    async with app.open_async():

        async def one() -> None:
            await noop.defer_async()

        async def many(k: int) -> None:
            await noop.batch_defer_async(*({} for _ in range(k)))

        async def trip() -> None:
            job_id = await noop.defer_async()
            while True:
                status = await app.job_manager.get_job_status_async(job_id)
                if status == procrastinate.jobs.Status.SUCCEEDED:
                    return
                if status in (procrastinate.jobs.Status.FAILED, procrastinate.jobs.Status.ABORTED):
                    raise RuntimeError(f"job {job_id} ended {status}")
                await asyncio.sleep(driver.POLL_S)

        yield SimpleNamespace(one=one, many=many, trip=trip)


if __name__ == "__main__":
    driver.main(session)

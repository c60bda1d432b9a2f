"""Oban for Python 0.7 (psycopg 3; it needs Python >= 3.12, so it runs from
`.venv-bench312/`, made by `make bench`): jobs in `oban_jobs` with `attempted_at` and
`completed_at`. Two `oban start` nodes, the `default` queue at a limit of 10 each (Oban has
no default limit). Round trip: `Oban.get_job` polled every 5 ms (it has no waiter).
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from types import SimpleNamespace

from bench.peers import driver

try:  # the harness imports this module from the project venv, which has no Oban
    import oban
except ImportError:
    oban = None

QUEUE_LIMIT = 10


def venv_bin(root) -> str:
    return str(root / ".venv-bench312" / "bin")


if oban is not None:

    @oban.worker(queue="default")
    class Noop:
        """Nothing: the job's row is its state."""

        async def process(self, job) -> None:
            return None


def setup(ctx) -> None:
    """The schema, by the library's own command."""
    import subprocess

    from bench.sandbox import ROOT

    subprocess.run(
        [f"{venv_bin(ROOT)}/oban", "install", "--dsn", ctx.dsn],
        env=ctx.env,
        check=True,
        capture_output=True,
    )


def workers(ctx) -> list[str]:
    from bench.sandbox import ROOT

    # --cron-modules: without it the CLI imports every module under the working directory
    # looking for cron workers (the whole project, and the venv beside it).
    command = (
        f"{venv_bin(ROOT)}/oban start --queues default:{QUEUE_LIMIT} --log-level WARNING"
        " --cron-modules bench.peers.oban_"
    )
    return [command, command]  # OBAN_DSN is in the environment


def progress(ctx) -> tuple:
    from bench.peers.method import sql_one

    done, first, last = sql_one(
        ctx,
        "SELECT count(*) FILTER (WHERE state = 'completed'),"
        " extract(epoch FROM min(attempted_at)), extract(epoch FROM max(completed_at))"
        " FROM oban_jobs",
    )
    return done, first, last, True


@asynccontextmanager
async def session():
    from psycopg_pool import AsyncConnectionPool

    # Run as __main__, the class here would be named `__main__.Noop`, which no node finds.
    from bench.peers.oban_ import Noop

    async with AsyncConnectionPool(os.environ["PEER_DSN"], min_size=1, max_size=2) as pool:
        client = oban.Oban(pool=pool)  # no queues: a client, it runs nothing

        async def one() -> None:
            await client.enqueue(Noop.new())

        async def many(k: int) -> None:
            await client.enqueue_many([Noop.new() for _ in range(k)])

        async def trip() -> None:
            job = await client.enqueue(Noop.new())
            while True:
                job = await client.get_job(job.id)
                if job.state == "completed":
                    return
                if job.state in ("discarded", "cancelled"):
                    raise RuntimeError(f"job {job.id} ended {job.state}")
                await asyncio.sleep(driver.POLL_S)

        yield SimpleNamespace(one=one, many=many, trip=trip)


if __name__ == "__main__":
    driver.main(session)

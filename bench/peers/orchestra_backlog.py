"""Orchestra by the peers' method: a backlog of `echo` jobs submitted through the domain
(`jobs.submit` one by one; in bulk, `jobs.create` k times in one unit of work, whose outbox
sends them after its commit), then the Procfile's worker at `-c 2` started on the broker's
backlog. Drain from `jobs.started_at` to `jobs.finished_at`. Round trip: `jobs.get` polled
every 5 ms, in process (the HTTP and Socket.IO round trip is the end-to-end section's).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace

from bench.peers import driver


def workers(ctx) -> list[str]:
    from bench import procs

    return [f"{procs.read_procfile()['worker']} -c 2"]


def setup(ctx) -> None:
    """The schema, by Alembic as `make db` does."""
    from scripts.sandbox import migrate

    migrate(ctx.database_url)


def progress(ctx) -> tuple:
    from bench.peers.method import sql_one

    done, first, last = sql_one(
        ctx,
        "SELECT count(*) FILTER (WHERE status = 'completed'),"
        " extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)) FROM jobs",
    )
    return done, first, last, True


@asynccontextmanager
async def session():
    import asyncio

    from app import jobs
    from app.config import Settings
    from app.outbox import unit_of_work
    from bench import orchestra

    o = orchestra.connect(Settings.from_env())
    counter = iter(range(10**9))

    def req() -> dict:
        return {"kind": "echo", "params": {"i": next(counter)}}

    async def one() -> None:
        jobs.submit(o.tenant, req())

    async def many(k: int) -> None:
        with unit_of_work("api") as uow:
            for _ in range(k):
                jobs.create(uow, o.tenant, req())

    async def trip() -> None:
        job, _ = jobs.submit(o.tenant, req())
        while (status := jobs.get(o.tenant, job.id).status) != "completed":
            if status in ("failed", "cancelled"):
                raise RuntimeError(f"job {job.id} ended {status}")
            await asyncio.sleep(driver.POLL_S)

    try:
        yield SimpleNamespace(one=one, many=many, trip=trip)
    finally:
        orchestra.close(o)


if __name__ == "__main__":
    driver.main(session)

"""Orchestra by the peers' method: a backlog of `echo` jobs submitted through the domain
(`jobs.submit` one by one; in bulk, `jobs.create` k times in one unit of work, whose outbox
sends them after its commit), then the Procfile's worker at `-c 2` started on the broker's
backlog. Drain from `jobs.started_at` to `jobs.finished_at`. Round trip: submit, then wait
for the job's `completed` event on the tenant's Redis channel, Orchestra's own waiter (the
relay listens there; the HTTP and Socket.IO round trip is the end-to-end section's).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace

from bench.peers import driver

ENDED = ("completed", "failed", "cancelled")


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
    import json
    import time

    from app import jobs, pubsub
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

    # Subscribed before the first trip: what a job publishes after its submit is heard.
    events = o.redis.pubsub(ignore_subscribe_messages=True)
    events.subscribe(pubsub.channel(o.tenant.name))

    async def trip() -> None:
        job, _ = jobs.submit(o.tenant, req())
        job_id, deadline = str(job.id), time.monotonic() + 30
        while time.monotonic() < deadline:
            message = events.get_message(timeout=1.0)
            if message is None:
                continue
            env = json.loads(message["data"])
            if env["subject"]["id"] == job_id and env["payload"].get("status") in ENDED:
                if env["payload"]["status"] != "completed":
                    raise RuntimeError(f"job {job_id} ended {env['payload']['status']}")
                return
        raise RuntimeError(f"job {job_id}: no terminal event in 30 s")

    try:
        yield SimpleNamespace(one=one, many=many, trip=trip)
    finally:
        events.close()
        orchestra.close(o)


if __name__ == "__main__":
    driver.main(session)

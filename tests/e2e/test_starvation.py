"""No tenant can stall the system: with every job slot of the tenants' workers taken by long
jobs, delayed jobs are still dispatched, a lost run is still reaped and agents' heartbeats
stay fresh, because the sweeps and the heartbeat pass run on the `system` worker.

"On time" here means: while every tenant slot is still taken. The filling jobs run for
minutes, far beyond every wait below, and the test checks at the end that none of them
ended; on a layout where the system's work shares the tenants' pools nothing of it runs in
that window at all. The lags measured are printed (about one sweep interval each).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from app import db
from tests.e2e.conftest import Client, start_stack
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

FILL_S = 300  # far longer than the test: the slots stay taken throughout
WAIT_S = 60  # the longest any check waits; a fifth of FILL_S


def _sql(query: str, **params):
    with db.transaction() as conn:
        return conn.execute(text(query), params).mappings().all()


def _tenant_slots(settings) -> int:
    """Pool slots of the tenants' workers (`worker-…` nodes), as they report them."""
    from workers import make_celery

    stats = make_celery(settings).control.inspect(timeout=2).stats() or {}
    slots = [s["pool"]["max-concurrency"] for n, s in stats.items() if n.startswith("worker-")]
    assert len(slots) == 2, stats.keys()
    return sum(slots)


def _running(job_ids: list[str]) -> list[dict]:
    return _sql(
        "SELECT id::text, worker, status FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) "
        "AND status = 'processing'",
        ids=job_ids,
    )


def _start_agent(client: Client) -> str:
    agent = client.post("/api/v1/agents", {"name": f"pulse-{uuid.uuid4().hex[:6]}",
                                           "type": "echo"}).json()
    start = client.post(f"/api/v1/agents/{agent['id']}/commands", {"command": "start"}).json()
    url = f"/api/v1/agents/{agent['id']}/commands/{start['id']}"
    wait_until(lambda: client.get(url).json()["status"] == "completed", WAIT_S, 0.2, "start")
    return agent["id"]


class Filled:
    """A stack whose tenant slots are all taken by long jobs, with a running agent."""

    def __init__(self, stack, client: Client, agent_id: str, fillers: list[str], slots: int,
                 full_at):
        self.stack, self.client, self.agent_id = stack, client, agent_id
        self.fillers, self.slots, self.full_at = fillers, slots, full_at


@pytest.fixture(scope="module")
def filled(domain):
    from app import tenants

    settings = domain.with_(agent_heartbeat_interval_s=0.5, agent_heartbeat_timeout_s=5.0)
    stack = start_stack(settings, workers=2, relays=0)
    client = Client(stack.url(stack.procs_named("api")[0]),
                    tenants.create_key(f"fill-{uuid.uuid4().hex[:8]}"))
    fillers: list[str] = []
    try:
        agent_id = _start_agent(client)  # while slots are free: its start is tenant work
        slots = _tenant_slots(settings)
        fillers = [client.submit("sleep", {"seconds": FILL_S, "steps": 100}, max_retries=5)["id"]
                   for _ in range(slots + 2)]  # every slot, and a backlog behind them
        wait_until(lambda: len(_running(fillers)) == slots, WAIT_S, 0.2, "every slot taken")
        (full,) = _sql("SELECT now() AS at")
        yield Filled(stack, client, agent_id, fillers, slots, full["at"])
        # Throughout, every slot stayed taken: no filler ended (the killed worker's went
        # back to waiting; the survivors still run).
        ended = _sql("SELECT id FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) "
                     "AND finished_at IS NOT NULL", ids=fillers)
        assert ended == []
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for job_id in fillers:  # so the workers' warm shutdown is quick
            client.post(f"/api/v1/jobs/{job_id}/cancel")
        stack.stop()


def test_a_delayed_job_is_dispatched_when_due(filled):
    """It reaches the broker when due, though no slot is free to run it."""
    delayed = filled.client.submit("echo", {"delayed": True}, countdown_s=2)
    (row,) = wait_until(
        lambda: _sql("SELECT run_after, dispatched_at FROM jobs WHERE id = :id "
                     "AND dispatched_at IS NOT NULL", id=delayed["id"]),
        WAIT_S, 0.2, "the delayed job to be dispatched",
    )
    print("dispatch lag after due:", row["dispatched_at"] - row["run_after"])
    assert len(_running(filled.fillers)) == filled.slots  # and they still are


def test_heartbeats_stay_fresh(filled):
    """The agent's heartbeat is refreshed after the slots filled up, and it stays running."""
    (beat,) = wait_until(
        lambda: _sql("SELECT last_heartbeat, status FROM agents WHERE id = :id "
                     "AND last_heartbeat > :t", id=filled.agent_id, t=filled.full_at),
        WAIT_S, 0.2, "a heartbeat while every slot is taken",
    )
    print("heartbeat after the slots filled:", beat["last_heartbeat"] - filled.full_at)
    assert beat["status"] == "running"
    assert len(_running(filled.fillers)) == filled.slots


def test_a_lost_run_is_reaped(filled):
    """A worker holding jobs is killed; the sweep reaps its runs (WORKER_LOST) although the
    surviving worker's slots are all still taken."""
    running = _running(filled.fillers)
    victim_name = running[0]["worker"]
    pid = int(victim_name.split("@")[0].rsplit("-", 1)[1])
    victim = next(p for p in filled.stack.procs_named("worker") if p.popen.pid == pid)
    lost = [j["id"] for j in running if j["worker"] == victim_name]
    survivors = [j["id"] for j in running if j["worker"] != victim_name]
    filled.stack.kill(victim)
    wait_until(
        lambda: len(_sql("SELECT id FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) "
                         "AND error->>'code' = 'WORKER_LOST'", ids=lost)) == len(lost),
        WAIT_S, 0.2, "the lost runs to be reaped",
    )
    assert survivors and {j["id"] for j in _running(survivors)} == set(survivors)
    (agent,) = _sql("SELECT status FROM agents WHERE id = :id", id=filled.agent_id)
    assert agent["status"] == "running"


"""The heartbeat pass runs one at a time: a second one, while a first holds the system
worker's slot, returns at once, so the sweep always finds the other slot free."""

from __future__ import annotations

import uuid

from sqlalchemy import text

import celeryconfig
from app import config, db, pubsub


def _running_agent(tenant) -> str:
    from app.agents import definitions

    agent = definitions.create(tenant[1], {"name": f"hb-{uuid.uuid4().hex[:8]}", "type": "echo"})
    with db.transaction() as conn:  # as a completed `start` leaves it
        conn.execute(
            text("UPDATE agents SET status = 'running', last_heartbeat = now() - "
                 "interval '1 hour' WHERE id = :id"),
            {"id": agent.id},
        )
    return str(agent.id)


def _last_heartbeat(agent_id: str):
    with db.transaction() as conn:
        return conn.execute(
            text("SELECT last_heartbeat FROM agents WHERE id = :id"), {"id": agent_id}
        ).scalar_one()


def test_a_pass_while_another_runs_returns_at_once(domain, tenant):
    from tasks.agents import heartbeat

    agent_id = _running_agent(tenant)
    before = _last_heartbeat(agent_id)
    hard_limit = celeryconfig.heartbeat_limits(config.current())[1]
    held = pubsub.client().lock(f"{pubsub.prefix()}:heartbeat-pass", timeout=hard_limit)
    assert held.acquire(blocking=False)  # a first pass, still running
    try:
        assert heartbeat() is None
        assert _last_heartbeat(agent_id) == before  # it ran no hook
    finally:
        held.release()
    assert heartbeat() >= 1  # the first one done: the next pass runs
    assert _last_heartbeat(agent_id) > before
    assert pubsub.client().exists(f"{pubsub.prefix()}:heartbeat-pass") == 0  # and let go

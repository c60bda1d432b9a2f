"""Agent commands on an embedded Celery worker (real Redis broker, real Postgres)."""

from __future__ import annotations

import re
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select, text, update

from app import config, db, events, telemetry
from app.agents import core, heartbeats
from app.models import AgentLog
from app.outbox import names
from tests.support.stack import wait_until

V1 = "/api/v1"


@pytest.fixture(scope="module")
def worker(domain):
    """Our Celery app with an embedded worker on every queue (Celery's own test harness)."""
    from workers import make_celery

    app = make_celery(domain)
    # Messages end-to-end tests of this run left behind (a sweep a killed worker held, say)
    # would otherwise run here and race the sweeps these tests call themselves.
    app.control.purge()
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=(*names.TENANT_QUEUES, names.SWEEPS_QUEUE),
        shutdown_timeout=30,
    ):
        yield app


class Agents:
    """The HTTP API of agents for one tenant, in-process."""

    def __init__(self, http):
        self.client, self.auth = http

    def create(self, type_="echo", **fields) -> dict:
        body = {"name": f"a-{uuid.uuid4().hex[:8]}", "type": type_, **fields}
        resp = self.client.post(f"{V1}/agents", json=body, headers=self.auth)
        assert resp.status_code == 201, resp.json
        return resp.json

    def command(self, agent_id, command, **params) -> dict:
        body = {"command": command, "params": params}
        resp = self.client.post(f"{V1}/agents/{agent_id}/commands", json=body, headers=self.auth)
        assert resp.status_code == 202, resp.json
        return resp.json

    def get(self, path: str):
        resp = self.client.get(f"{V1}{path}", headers=self.auth)
        assert resp.status_code == 200, (path, resp.json)
        return resp.json

    def wait_command(self, agent_id, cmd, statuses=("completed", "failed"), timeout=20):
        path = f"/agents/{agent_id}/commands/{cmd['id']}"
        return wait_until(
            lambda: (c := self.get(path))["status"] in statuses and c,
            timeout,
            0.05,
            f"command {cmd['command']} to end",
        )

    def events(self, agent_id, since=0) -> list[dict]:
        return self.get(f"/agents/{agent_id}/events?since={since}")["items"]


@pytest.fixture
def agents(http, worker):
    return Agents(http)


def test_start_say_stop_in_order_with_their_events(agents):
    agent = agents.create()
    aid = agent["id"]
    start = agents.command(aid, "start")
    says = [
        agents.command(aid, "execute", capability="say", input={"text": f"hi {i}"})
        for i in range(3)
    ]
    stop = agents.command(aid, "stop")
    done = [agents.wait_command(aid, c) for c in [start, *says, stop]]
    assert [c["status"] for c in done] == ["completed"] * 5, done
    assert [c["result"] for c in done[1:4]] == [{"text": f"hi {i}"} for i in range(3)]
    # One at a time, in the order accepted: each started after the previous finished.
    for before, after in zip(done, done[1:], strict=False):
        assert before["finished_at"] <= after["started_at"], (before, after)
    assert agents.get(f"/agents/{aid}")["status"] == "stopped"
    events = agents.events(aid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["payload"]["status"] for e in events if e["event_type"] == "agent.status.changed"]
    assert statuses == ["starting", "running", "stopped"]
    executions = [e for e in events if e["event_type"].startswith("agent.capability.execution")]
    assert [e["event_type"].rsplit(".", 1)[1] for e in executions] == ["started", "completed"] * 3
    assert all(e["payload"]["job_id"] is None for e in executions)
    logs = agents.get(f"/agents/{aid}/logs")["items"]
    assert [line["message"] for line in logs][-1].endswith("stopped")
    assert "say: hi 2" in [line["message"] for line in logs]


def test_the_shortcuts_and_the_status_command(agents):
    aid = agents.create()["id"]
    asleep = agents.wait_command(aid, agents.command(aid, "status"))
    assert asleep["result"] == {
        "status": "stopped",
        "last_heartbeat": None,
        "health": {"healthy": True},
    }
    assert agents.get(f"/agents/{aid}")["last_heartbeat"] is None  # no heartbeat while stopped
    started = agents.client.post(f"{V1}/agents/{aid}/start", headers=agents.auth)
    assert started.status_code == 202 and started.json["command"] == "start"
    status = agents.wait_command(aid, agents.command(aid, "status"))
    assert status["result"]["status"] == "running"
    assert status["result"]["health"] == {"healthy": True}
    assert set(status) >= {
        "status",
        "command",
        "agent_id",
        "result",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    }
    restarted = agents.client.post(f"{V1}/agents/{aid}/restart", headers=agents.auth).json
    assert agents.wait_command(aid, restarted)["status"] == "completed"
    stopped = agents.client.post(
        f"{V1}/agents/{aid}/stop", json={"params": {"reason": "maintenance"}}, headers=agents.auth
    ).json
    assert agents.wait_command(aid, stopped)["result"] == {"status": "stopped", "changed": True}
    changes = [
        (e["payload"]["status"], e["payload"]["reason"])
        for e in agents.events(aid)
        if e["event_type"] == "agent.status.changed"
    ]
    assert changes == [
        ("starting", "start"),
        ("running", "start"),
        ("starting", "restart"),
        ("running", "restart"),
        ("stopped", "maintenance"),
    ]
    view = agents.get(f"/agents/{aid}/status")
    assert view["status"] == "stopped" and view["last_heartbeat"] is not None


def test_a_failing_start_is_an_error_and_a_queued_execute_fails_clearly(agents):
    aid = agents.create(config={"fail_start": True})["id"]
    start = agents.command(aid, "start")
    say = agents.command(aid, "execute", capability="say", input={"text": "x"})
    assert agents.wait_command(aid, start)["error"]["code"] == "AGENT_ERROR"
    failed = agents.wait_command(aid, say)
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "AGENT_NOT_RUNNING", "message": "agent is error"}
    agent = agents.get(f"/agents/{aid}")
    assert agent["status"] == "error" and "fail_start" in agent["error"]["message"]
    assert any(line["level"] == "error" for line in agents.get(f"/agents/{aid}/logs")["items"])


def test_generate_completes_by_callback_when_its_job_does(agents):
    aid = agents.create(type_="generator")["id"]
    agents.command(aid, "start")
    ok = agents.command(
        aid,
        "execute",
        capability="generate",
        input={"kind": "sleep", "params": {"seconds": 0.3, "steps": 3}, "card_id": "card-7"},
    )
    bad = agents.command(
        aid,
        "execute",
        capability="generate",
        input={"kind": "fail", "params": {"message": "no luck"}},
    )
    done = agents.wait_command(aid, ok)
    assert done["status"] == "completed", done
    job = agents.get(f"/jobs/{done['job_id']}")
    assert job["status"] == "completed" and job["card_id"] == "card-7"
    assert job["concurrency_key"] == f"agent:{aid}"  # the agent's own limit holds it
    assert done["result"] == {"job_id": job["id"], "result": job["result"]}
    # Not polled: the command ended in the very transaction of the job's last status.
    with db.transaction() as conn:
        xmins = {
            conn.execute(
                text(f"SELECT xmin::text FROM {table} WHERE id = :id"), {"id": id_}
            ).scalar_one()
            for table, id_ in (("jobs", job["id"]), ("agent_commands", ok["id"]))
        }
    assert len(xmins) == 1
    failed = agents.wait_command(aid, bad)
    assert failed["status"] == "failed" and failed["error"]["code"] == "JOB_FAILED"
    events = agents.events(aid)
    execs = [
        (e["event_type"].rsplit(".", 1)[1], e["payload"]["job_id"], e["payload"]["command_id"])
        for e in events
        if e["event_type"].startswith("agent.capability.execution")
    ]
    assert ("started", job["id"], ok["id"]) in execs and ("completed", job["id"], ok["id"]) in execs
    assert ("failed", failed["job_id"], bad["id"]) in execs
    assert execs.index(("started", job["id"], ok["id"])) < execs.index(
        ("completed", job["id"], ok["id"])
    )


def test_a_long_generation_does_not_hold_up_later_commands(agents):
    aid = agents.create(type_="generator")["id"]
    agents.command(aid, "start")
    slow = agents.command(
        aid,
        "execute",
        capability="generate",
        input={"kind": "sleep", "params": {"seconds": 3, "steps": 3}},
    )
    status = agents.wait_command(aid, agents.command(aid, "status"), timeout=10)
    assert status["status"] == "completed"
    assert agents.get(f"/agents/{aid}/commands/{slow['id']}")["status"] == "processing"
    assert agents.wait_command(aid, slow)["status"] == "completed"


def test_deleting_a_running_agent_stops_it_first(agents):
    aid = agents.create()["id"]
    agents.wait_command(aid, agents.command(aid, "start"))
    resp = agents.client.delete(f"{V1}/agents/{aid}", headers=agents.auth)
    assert resp.status_code == 204
    assert agents.client.get(f"{V1}/agents/{aid}", headers=agents.auth).status_code == 404

    def stopped():
        with db.transaction() as conn:
            return (
                conn.execute(
                    select(AgentLog.message)
                    .where(AgentLog.agent_id == uuid.UUID(aid))
                    .order_by(AgentLog.id.desc())
                    .limit(1)
                )
                .scalar_one()
                .endswith("stopped")
            )

    wait_until(stopped, 20, 0.05, "the stop hook of the deleted agent")
    with db.transaction() as conn:
        row = core.load(conn, aid, deleted=True)
        assert row.status == "stopped" and row.deleted_at is not None
        trail = [
            (e["event_type"], e["payload"].get("status"))
            for e in events.for_subject(conn, "agent", row.id)
        ]
    deleted = trail.index(("agent.delete.completed", None))
    assert ("agent.status.changed", "stopped") in trail[deleted:]


def test_metrics_count_and_time_commands_and_executions(agents):
    aid = agents.create()["id"]
    cmds = [agents.command(aid, "start")]
    cmds += [
        agents.command(aid, "execute", capability="say", input={"text": "m"}) for _ in range(4)
    ]
    for c in cmds:
        agents.wait_command(aid, c)
    metrics = agents.get(f"/agents/{aid}/metrics")
    assert metrics["commands"]["execute"]["count"] == 4
    assert metrics["commands"]["start"]["completed"] == 1
    say = metrics["executions"]["say"]
    assert say["completed"] == 4 and say["failed"] == 0
    assert 0 <= say["duration_s"]["p50"] <= say["duration_s"]["max"]
    telemetry.refresh_counts(1.0, force=True)  # what the sweep does every few seconds
    scraped = agents.client.get("/metrics").get_data(as_text=True)
    done = re.search(
        r'orchestra_agent_commands\{command="execute",status="completed"\} (\S+)', scraped
    )
    assert done and float(done.group(1)) >= 4
    assert re.search(r'orchestra_agents\{status="running",type="echo"\} [1-9]', scraped)
    assert 'orchestra_queue_depth{queue="agents"}' in scraped


def test_logs_are_bounded_per_agent_newest_last(agents, domain):
    aid = agents.create()["id"]
    config.install(domain.with_(agent_log_retain=5))
    try:
        agents.wait_command(aid, agents.command(aid, "start"))
        cmds = [
            agents.command(aid, "execute", capability="say", input={"text": f"n{i}"})
            for i in range(8)
        ]
        for c in cmds:
            agents.wait_command(aid, c)
    finally:
        config.install(domain)
    lines = agents.get(f"/agents/{aid}/logs?limit=100")["items"]
    assert [line["message"] for line in lines] == [f"say: n{i}" for i in range(3, 8)]
    assert [line["message"] for line in agents.get(f"/agents/{aid}/logs?limit=2")["items"]] == [
        "say: n6",
        "say: n7",
    ]
    with db.transaction() as conn:
        assert (
            conn.execute(
                select(func.count())
                .select_from(AgentLog)
                .where(AgentLog.agent_id == uuid.UUID(aid))
            ).scalar_one()
            == 5
        )


def test_silence_makes_an_agent_inactive_and_a_healthy_heartbeat_revives_it(agents, domain):
    aid = agents.create()["id"]
    agents.wait_command(aid, agents.command(aid, "start"))
    config.install(domain.with_(agent_heartbeat_timeout_s=0.3))
    try:

        def inactive():
            heartbeats.mark_inactive()  # the beat's sweep, run here
            return agents.get(f"/agents/{aid}")["status"] == "inactive"

        wait_until(inactive, 5, 0.1, "the silent agent to become inactive")
        assert agents.get(f"/agents/{aid}")["status"] == "inactive"
        agents.client.patch(
            f"{V1}/agents/{aid}", json={"config": {"healthy": False}}, headers=agents.auth
        )
        heartbeats.heartbeat_all()
        assert agents.get(f"/agents/{aid}")["status"] == "inactive"  # unhealthy: no heartbeat
        agents.client.patch(
            f"{V1}/agents/{aid}", json={"config": {"healthy": True}}, headers=agents.auth
        )
        assert heartbeats.heartbeat_all() >= 1
    finally:
        config.install(domain)
    agent = agents.get(f"/agents/{aid}")
    assert agent["status"] == "running"
    changes = [
        (e["payload"]["previous_status"], e["payload"]["status"], e["payload"]["reason"])
        for e in agents.events(aid)
        if e["event_type"] == "agent.status.changed"
    ]
    assert changes[-2:] == [
        ("running", "inactive", "no heartbeat for 0.3s"),
        ("inactive", "running", "heartbeat"),
    ]
    assert any(
        "unhealthy" in line["message"] for line in agents.get(f"/agents/{aid}/logs")["items"]
    )


def test_a_command_the_broker_never_took_is_sent_by_the_sweep(agents, worker, domain):
    from app import outbox
    from app.agents import commands
    from app.outbox import sweep

    aid = agents.create()["id"]

    def broker_down(*_, **__):
        raise ConnectionError("broker down")

    outbox.configure(broker_down)
    try:
        start = agents.command(aid, "start")  # accepted: the row and its intent are stored
    finally:
        outbox.configure(worker.send_task)
    assert agents.get(f"/agents/{aid}/commands/{start['id']}")["status"] == "queued"

    def sent_again():
        sweep.dispatch_due(commands.COMMAND_RUN)
        return agents.get(f"/agents/{aid}/commands/{start['id']}")["status"] == "completed"

    wait_until(sent_again, 15, 0.3, "the sweep to send the command")


def test_a_command_whose_worker_vanished_is_failed_and_the_mailbox_moves_on(agents):
    from app.agents import commands
    from app.models import AgentCommand

    aid = agents.create()["id"]
    agents.wait_command(aid, agents.command(aid, "start"))
    with db.transaction() as conn:  # a worker took a restart and died mid-hook, long ago
        conn.execute(text("UPDATE agents SET status = 'starting' WHERE id = :id"), {"id": aid})
    lost = agents.command(aid, "status")
    wait_until(
        lambda: agents.get(f"/agents/{aid}/commands/{lost['id']}")["status"] != "queued",
        10,
        0.05,
        "the status command to run",
    )
    with db.transaction() as conn:
        conn.execute(
            AgentCommand.__table__.update()
            .where(AgentCommand.id == uuid.UUID(lost["id"]))
            .values(
                status="processing",
                finished_at=None,
                result=None,
                started_at=func.now() - text("interval '1 hour'"),
            )
        )
    later = agents.command(aid, "stop")
    commands.reap_stuck()
    failed = agents.get(f"/agents/{aid}/commands/{lost['id']}")
    assert failed["status"] == "failed" and failed["error"]["code"] == "WORKER_LOST"
    assert agents.wait_command(aid, later)["status"] == "completed"


def test_a_broker_that_lost_its_data_gets_the_waiting_commands_again(http, domain):
    """Redis restarted empty: a command whose message was taken (then lost) is sent again,
    with a new token, by the sweep."""
    import redis

    from app import outbox
    from app.agents import commands
    from app.models import AgentCommand
    from app.outbox import sweep
    from workers import make_celery

    sent = []
    broker = redis.Redis.from_url(domain.redis_url)
    sweep.redispatch_if_broker_lost(broker)  # the marker exists
    outbox.configure(lambda *args, **kw: sent.append(kw["kwargs"]))  # a broker that "took" it
    try:
        aid = Agents(http).create()["id"]
        start = Agents(http).command(aid, "start")
        outbox.flush_marks()
        first_token = sent[-1]["token"]

        def row():
            with db.transaction() as conn:
                return conn.execute(
                    select(AgentCommand.dispatched_at, AgentCommand.dispatch_token).where(
                        AgentCommand.id == uuid.UUID(start["id"])
                    )
                ).one()

        assert row().dispatched_at is not None
        broker.delete(f"{domain.channel_prefix}:broker-epoch")  # a restart without disk
        sweep.redispatch_if_broker_lost(broker)
        assert str(row().dispatch_token) != first_token  # the lost message can claim nothing

        def sent_again():
            sweep.dispatch_due(commands.COMMAND_RUN)
            return sent[-1] == {"command_id": start["id"], "token": str(row().dispatch_token)}

        wait_until(sent_again, 10, 0.2, "the sweep to send it again")
        assert row().dispatched_at is not None
    finally:
        outbox.configure(make_celery(domain).send_task)


def test_a_command_message_the_broker_lost_is_sent_again(http, domain):
    """A command the broker took and then lost (a worker SIGKILLed between the queue and
    `unacked`) is found by the same lost-message sweep as jobs, and gets a new token."""
    from datetime import UTC, datetime, timedelta

    import redis

    from app import outbox
    from app.models import AgentCommand
    from app.outbox import sweep
    from workers import make_celery

    broker = redis.Redis.from_url(domain.redis_url)
    outbox.configure(lambda *args, **kw: None)  # a broker that says yes and keeps nothing
    try:
        aid = Agents(http).create()["id"]
        start = Agents(http).command(aid, "start")
    finally:
        outbox.configure(make_celery(domain).send_task)
    outbox.flush_marks()
    cid = uuid.UUID(start["id"])
    with db.transaction() as conn:  # sent long ago
        token = conn.execute(
            update(AgentCommand)
            .where(AgentCommand.id == cid, AgentCommand.dispatched_at.isnot(None))
            .values(dispatched_at=datetime.now(UTC) - timedelta(hours=1))
            .returning(AgentCommand.dispatch_token)
        ).scalar_one()
    broker.delete(f"{domain.channel_prefix}:lost-check")
    assert sweep.redispatch_lost_messages(broker) >= 1
    with db.transaction() as conn:
        row = conn.execute(
            select(AgentCommand.dispatched_at, AgentCommand.dispatch_token).where(
                AgentCommand.id == cid
            )
        ).one()
    assert row.dispatched_at is None and row.dispatch_token != token

"""Agents end to end: HTTP API, workers, beat and relays as real processes."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import start_stack
from tests.support.sio import EventClient
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

HEARTBEAT_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def stack(domain):
    """The stack with a short heartbeat timeout, so silence shows within a test."""
    stack = start_stack(
        domain.with_(agent_heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, agent_heartbeat_interval_s=0.4)
    )
    yield stack
    print(stack.logs())
    stack.stop()


@pytest.fixture
def relays(stack):
    return [stack.url(r) for r in stack.procs_named("relay")]


def command(client, agent_id: str, name: str, **params) -> dict:
    resp = client.post(f"/api/v1/agents/{agent_id}/commands", {"command": name, "params": params})
    assert resp.status_code == 202, resp.text
    return resp.json()


def wait_command(client, agent_id: str, cmd: dict, timeout: float = 30) -> dict:
    url = f"/api/v1/agents/{agent_id}/commands/{cmd['id']}"
    return wait_until(
        lambda: (c := client.get(url).json())["status"] in ("completed", "failed") and c,
        timeout,
        0.1,
        f"command {cmd['command']} to end",
    )


def summary(events: list[dict]) -> list[tuple]:
    """(event type, status or capability outcome) of each event, to compare in order."""
    out = []
    for e in events:
        p = e["payload"]
        if e["event_type"] == "agent.command.updated":
            out.append(("command", p["command"], p["status"], bool(p["job_id"])))
        elif e["event_type"] == "agent.status.changed":
            out.append(("status", p["status"]))
        else:
            out.append((e["event_type"],))
    return out


def test_the_whole_lifecycle_is_seen_live_in_order(stack, client, tenant, relays):
    resp = client.post("/api/v1/agents", {"name": "painter", "type": "generator"})
    assert resp.status_code == 201, resp.text
    aid = resp.json()["id"]
    watcher = EventClient(relays[0], tenant[0])
    try:
        assert watcher.subscribe(f"agent:{aid}", since=0) == {"ok": True}
        assert wait_command(client, aid, command(client, aid, "start"))["status"] == "completed"
        gen = command(
            client,
            aid,
            "execute",
            capability="generate",
            input={"kind": "sleep", "params": {"seconds": 0.5, "steps": 2}, "card_id": "c-1"},
        )
        done = wait_command(client, aid, gen)
        assert done["status"] == "completed", done
        job = client.job(done["job_id"])
        assert job["status"] == "completed"
        assert done["result"] == {"job_id": job["id"], "result": job["result"]}
        assert wait_command(client, aid, command(client, aid, "stop"))["status"] == "completed"
        stored = client.get(f"/api/v1/agents/{aid}/events").json()["items"]
        assert client.http.delete(client.base + f"/api/v1/agents/{aid}").status_code == 204
        assert client.get(f"/api/v1/agents/{aid}").status_code == 404

        def all_seen():
            evs = watcher.of(aid)
            return evs and evs[-1]["event_type"] == "agent.delete.completed" and evs

        seen = wait_until(all_seen, 20, 0.05, "agent.delete.completed on the socket")
    finally:
        watcher.close()
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))  # no gap, no duplicate
    assert seen[: len(stored)] == stored
    assert summary(seen) == [
        ("agent.create.completed",),
        ("command", "start", "queued", False),
        ("command", "start", "processing", False),
        ("status", "starting"),
        ("status", "running"),
        ("command", "start", "completed", False),
        ("command", "execute", "queued", False),
        ("command", "execute", "processing", False),
        ("command", "execute", "processing", True),
        ("agent.capability.execution.started",),
        ("command", "execute", "completed", True),
        ("agent.capability.execution.completed",),
        ("command", "stop", "queued", False),
        ("command", "stop", "processing", False),
        ("status", "stopped"),
        ("command", "stop", "completed", False),
        ("agent.delete.completed",),
    ]
    executions = [e["payload"] for e in seen if "execution" in e["event_type"]]
    assert {p["job_id"] for p in executions} == {job["id"]}
    assert executions[1]["result"] == done["result"]


def test_a_client_resumes_an_agent_room_on_another_relay(stack, client, tenant, relays):
    aid = client.post("/api/v1/agents", {"name": "resumable", "type": "echo"}).json()["id"]
    wait_command(client, aid, command(client, aid, "start"))
    say = wait_command(
        client, aid, command(client, aid, "execute", capability="say", input={"text": "again"})
    )
    assert say["result"] == {"text": "again"}
    stored = client.get(f"/api/v1/agents/{aid}/events").json()["items"]
    late = EventClient(relays[1], tenant[0])
    try:
        assert late.subscribe(f"agent:{aid}", since=3) == {"ok": True}
        replayed = wait_until(
            lambda: len(late.of(aid)) >= len(stored) - 3 and late.of(aid), 10, 0.05, "the replay"
        )
        stop = command(client, aid, "stop")
        wait_command(client, aid, stop)
        wait_until(
            lambda: (
                late.of(aid)[-1]["payload"].get("status") == "completed"
                and late.of(aid)[-1]["payload"].get("command") == "stop"
            ),
            10,
            0.05,
            "live",
        )
        seen = late.of(aid)
    finally:
        late.close()
    assert replayed[: len(stored) - 3] == stored[3:]
    assert [e["seq"] for e in seen] == list(range(4, 4 + len(seen)))


def test_another_tenants_agent_room_is_refused(stack, client, other_tenant, relays):
    aid = client.post("/api/v1/agents", {"name": "private", "type": "echo"}).json()["id"]
    intruder = EventClient(relays[0], other_tenant[0])
    try:
        ack = intruder.subscribe(f"agent:{aid}")
    finally:
        intruder.close()
    assert ack == {"ok": False, "error": {"code": "NOT_FOUND", "message": "no such agent"}}


def test_workers_keep_a_healthy_agent_running_and_silence_makes_it_inactive(
    stack, client, tenant, relays
):
    aid = client.post("/api/v1/agents", {"name": "pulse", "type": "echo"}).json()["id"]
    watcher = EventClient(relays[0], tenant[0])
    try:
        watcher.subscribe(f"agent:{aid}")
        wait_command(client, aid, command(client, aid, "start"))
        first = client.get(f"/api/v1/agents/{aid}/status").json()["last_heartbeat"]

        # Healthy: the workers' heartbeats keep it running well past the timeout.
        def refreshed():
            status = client.get(f"/api/v1/agents/{aid}/status").json()
            return status["last_heartbeat"] > first and status

        wait_until(refreshed, 10, 0.2, "a heartbeat from the workers")
        import time

        time.sleep(HEARTBEAT_TIMEOUT_S * 1.5)
        assert client.get(f"/api/v1/agents/{aid}").json()["status"] == "running"

        # Its health hook says unhealthy: no more heartbeats, so it becomes inactive.
        client.http.patch(
            client.base + f"/api/v1/agents/{aid}", json={"config": {"healthy": False}}
        )
        wait_until(
            lambda: client.get(f"/api/v1/agents/{aid}").json()["status"] == "inactive",
            HEARTBEAT_TIMEOUT_S * 5,
            0.2,
            "inactive",
        )
        # Healthy again: the next heartbeat brings it back.
        client.http.patch(client.base + f"/api/v1/agents/{aid}", json={"config": {"healthy": True}})
        wait_until(
            lambda: client.get(f"/api/v1/agents/{aid}").json()["status"] == "running",
            HEARTBEAT_TIMEOUT_S * 5,
            0.2,
            "running again",
        )
        wait_until(
            lambda: (
                [
                    e["payload"]["status"]
                    for e in watcher.of(aid)
                    if e["event_type"] == "agent.status.changed"
                ][-1:]
                == ["running"]
            ),
            10,
            0.05,
            "the events on the socket",
        )
        changes = [
            (e["payload"]["previous_status"], e["payload"]["status"])
            for e in watcher.of(aid)
            if e["event_type"] == "agent.status.changed"
        ]
    finally:
        watcher.close()
    assert changes == [
        ("stopped", "starting"),
        ("starting", "running"),
        ("running", "inactive"),
        ("inactive", "running"),
    ]
    logs = client.get(f"/api/v1/agents/{aid}/logs").json()["items"]
    assert any("unhealthy" in line["message"] for line in logs)


def test_a_key_sees_in_the_tenant_room_only_what_its_scopes_read(stack, client, tenant, relays):
    from app import tenants

    jobs_only = tenants.create_key(tenant[1].name, ["jobs:read"])
    watcher = EventClient(relays[0], jobs_only)
    try:
        assert watcher.subscribe("tenant") == {"ok": True}
        refused = watcher.subscribe(f"agent:{tenant[1].id}")
        assert refused["ok"] is False and refused["error"]["code"] == "FORBIDDEN"
        aid = client.post("/api/v1/agents", {"name": "hidden", "type": "echo"}).json()["id"]
        wait_command(client, aid, command(client, aid, "start"))
        job = client.submit("echo", {"after": "agent"})
        wait_until(lambda: any(e["payload"].get("status") == "completed"
                               for e in watcher.of(job["id"])), 20, 0.05, "the job's events")
        kinds = {e["subject"]["type"] for e in watcher.events}
    finally:
        watcher.close()
    assert kinds == {"job"}


def test_a_revoked_key_cannot_connect_and_no_secret_reaches_a_log(stack, client, tenant, relays):
    import socketio

    from app import tenants

    doomed = tenants.create_key(tenant[1].name)
    EventClient(relays[0], doomed).close()
    tenants.revoke(doomed)
    with pytest.raises(socketio.exceptions.ConnectionError):
        EventClient(relays[0], doomed)
    assert client.get("/api/v1/jobs").status_code == 200
    for proc in stack.procs:
        text = proc.log_path.read_text(errors="replace")
        assert tenant[0] not in text and doomed not in text, proc.name


def test_the_relay_withholds_a_jobs_result_from_an_agents_only_key(stack, client, tenant, relays):
    """Live on one relay and replayed on the other, an execution's job result reaches a key
    without `jobs:read` only as its job id (the rule of `app/agents/scopes.py`)."""
    from app import tenants
    from app.agents import scopes

    agents_only = tenants.create_key(tenant[1].name, ["agents:read"])
    create = {"name": "scoped", "type": "generator"}
    aid = client.post("/api/v1/agents", create).json()["id"]
    wait_command(client, aid, command(client, aid, "start"))
    live = EventClient(relays[0], agents_only)
    try:
        assert live.subscribe(f"agent:{aid}") == {"ok": True}
        run = command(client, aid, "execute", capability="generate",
                      input={"kind": "echo", "params": {"secret": "job data"}})
        done = wait_command(client, aid, run)
        assert done["result"]["result"] == {"secret": "job data"}  # the full key sees it

        def completed(c):
            return [e for e in c.of(aid)
                    if e["event_type"] == "agent.capability.execution.completed"]

        wait_until(lambda: completed(live), 20, 0.05, "the execution's end, live")
        replayed = EventClient(relays[1], agents_only)
        try:
            assert replayed.subscribe(f"agent:{aid}", since=0) == {"ok": True}
            wait_until(lambda: completed(replayed), 20, 0.05, "the execution's end, replayed")
        finally:
            replayed.close()
    finally:
        live.close()
    for seen in (live.events, replayed.events):
        assert "job data" not in str(seen)
        assert completed_payload(seen)["result"] == {
            "job_id": done["job_id"], "withheld": scopes.WITHHELD
        }


def completed_payload(events: list[dict]) -> dict:
    [ended] = [e for e in events if e["event_type"] == "agent.capability.execution.completed"]
    return ended["payload"]

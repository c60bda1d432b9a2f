"""The relay under pressure: a client that stops reading slows no one; a relay killed
mid-stream costs a resuming client nothing."""

from __future__ import annotations

import json
import socket

import pytest
import websocket

from tests.support.sio import EventClient
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


class StalledClient:
    """A Socket.IO client, spoken by hand over a raw WebSocket with a tiny receive buffer,
    that joins the tenant room and then never reads again (a frozen browser tab)."""

    def __init__(self, relay_url: str, secret: str):
        url = relay_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(
            url, timeout=10, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
        )
        assert self.ws.recv().startswith("0")  # engine.io open
        self.ws.send("40" + json.dumps({"token": secret}))  # socket.io connect, with auth
        assert self.ws.recv().startswith("40")
        self.ws.send('421["subscribe",{"room":"tenant"}]')
        assert json.loads(self.ws.recv()[3:]) == [{"ok": True}]

    def close(self) -> None:
        self.ws.close()


def test_a_client_that_stops_reading_does_not_slow_the_others(stack, client):
    relay = stack.url(stack.procs_named("relay")[0])
    stalled = StalledClient(relay, client.secret)
    watcher = EventClient(relay, client.secret)
    try:
        assert watcher.subscribe("tenant") == {"ok": True}
        blob = "x" * 40_000  # each completed event carries it: megabytes the stalled one owes
        jobs = [client.submit("echo", {"i": i, "blob": blob})["id"] for i in range(120)]

        def all_completed():
            done = {
                e["subject"]["id"]
                for e in watcher.events
                if e["payload"].get("status") == "completed"
            }
            return set(jobs) <= done

        wait_until(all_completed, 60, 0.1, "every completion at the reading client")
        for job_id in jobs:
            assert [e["seq"] for e in watcher.of(job_id)] == [1, 2, 3]
    finally:
        watcher.close()
        stalled.close()


def test_a_relay_killed_mid_stream_loses_nothing_for_a_client_that_resumes(stack, client):
    first = stack.start("relay")
    stack.wait_http(first)
    jobs = [client.submit("sleep", {"seconds": 3, "steps": 6})["id"] for _ in range(4)]
    before = EventClient(stack.url(first), client.secret)
    for job_id in jobs:
        assert before.subscribe(f"job:{job_id}", since=0) == {"ok": True}
    wait_until(lambda: all(len(before.of(j)) >= 3 for j in jobs), 30, 0.05, "some progress")
    stack.kill(first)  # mid-stream, without a goodbye
    last = {j: max([0] + [e["seq"] for e in before.of(j)]) for j in jobs}
    second = stack.start("relay")
    stack.wait_http(second)
    after = EventClient(stack.url(second), client.secret)
    try:
        for job_id in jobs:
            assert after.subscribe(f"job:{job_id}", since=last[job_id]) == {"ok": True}
        for job_id in jobs:
            after.wait_for_status(job_id, "completed", timeout=40)
        for job_id in jobs:
            seqs = [e["seq"] for e in before.of(job_id) if e["seq"] <= last[job_id]]
            seqs += [e["seq"] for e in after.of(job_id)]
            stored = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
            assert seqs == list(range(1, len(stored) + 1)), job_id
    finally:
        after.close()
        try:
            before.close()
        except Exception:  # noqa: BLE001 - its relay is gone
            pass


def test_the_relay_accepts_only_its_configured_origins(stack, client):
    import requests
    import socketio

    relay = stack.start("relay", RELAY_CORS_ORIGINS="https://console.example")
    stack.wait_http(relay)
    good = socketio.Client(reconnection=False)
    # Long-polling: the websocket client would send an Origin of its own beside ours.
    good.connect(
        stack.url(relay),
        auth={"token": client.secret},
        transports=["polling"],
        headers={"Origin": "https://console.example"},
        wait_timeout=10,
    )
    assert good.call("subscribe", {"room": "tenant"}, timeout=10) == {"ok": True}
    good.disconnect()
    handshake = stack.url(relay) + "/socket.io/?EIO=4&transport=polling"
    evil = requests.get(handshake, headers={"Origin": "https://evil.example"}, timeout=5)
    assert evil.status_code == 400 and "origin" in evil.text.lower()
    fine = requests.get(handshake, headers={"Origin": "https://console.example"}, timeout=5)
    assert fine.status_code == 200

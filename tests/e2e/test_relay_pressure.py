"""The relay under pressure: a client that stops reading slows no one and is dropped; a
replay of 10,000 events goes out in pages; a relay killed mid-stream costs a resuming client
nothing."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from pathlib import Path

import pytest
import requests
import websocket
from sqlalchemy import text

from app import db
from tests.support.published import envelope, publish
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


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of a relay's /metrics, 0 if absent."""
    body = requests.get(url + "/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def relay_rss_kb(proc) -> int:
    """The resident memory of a relay's gunicorn worker (the master's one child)."""
    master = proc.popen.pid
    (child,) = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    status = Path(f"/proc/{child}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))



def test_a_client_that_stops_reading_is_dropped_and_its_queue_stays_bounded(
    stack, domain, tenant
):
    proc = stack.start("relay", RELAY_SEND_QUEUE_MAX=100)
    stack.wait_http(proc)
    relay = stack.url(proc)
    stalled = StalledClient(relay, tenant[0])
    watcher = EventClient(relay, tenant[0])
    try:
        assert watcher.subscribe("tenant") == {"ok": True}
        rss_before = relay_rss_kb(proc)
        subject, blob = str(uuid.uuid4()), "x" * 40_000
        # 24 MB the stalled client never reads, in bursts a reading client keeps up with.
        peak = 0.0
        for first in range(1, 601, 10):
            publish(domain, [envelope(tenant[1].name, subject, s, blob=blob)
                             for s in range(first, first + 10)])
            wait_until(lambda n=first + 9: len(watcher.of(subject)) == n, 30, 0.01, "a burst")
            peak = max(peak, metric(relay, "orchestra_relay_queued_packets"))
        assert [e["seq"] for e in watcher.of(subject)] == list(range(1, 601))
        dropped = 'orchestra_relay_dropped_connections_total{reason="send_queue"}'
        wait_until(lambda: metric(relay, dropped) == 1, 20, 0.05, "the stalled client dropped")
        wait_until(lambda: metric(relay, "orchestra_relay_connections") == 1, 10, 0.05,
                   "only the reading client left")
        queued = metric(relay, "orchestra_relay_queued_packets")
        print(f"slow reader dropped; queued packets: peak {peak}, now {queued}; relay RSS "
              f"{rss_before} -> {relay_rss_kb(proc)} kB")
        assert peak <= 100 + 10 and queued <= 100  # the bound, plus one burst in flight
    finally:
        watcher.close()
        stalled.close()


def _store_events(job_id: str, tenant, seqs: range) -> None:
    """Store events of a job as the outbox would have (set-based: 10,000 rows at once)."""
    meta = json.dumps({"tenant": tenant.name, "correlation_id": None, "card_id": None,
                       "version": "1.0"})
    with db.transaction() as conn:
        conn.execute(text(
            "INSERT INTO events (id, tenant_id, subject_type, subject_id, seq, event_type,"
            " source_service, payload, metadata, created_at, published_at)"
            " SELECT gen_random_uuid(), :tid, 'job', CAST(:jid AS uuid), s,"
            " 'job.progress.updated', 'test',"
            " jsonb_build_object('job_id', CAST(:jid AS text), 'progress', 0.5),"
            " CAST(:meta AS jsonb), clock_timestamp(), now()"
            " FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS s"
        ), {"tid": tenant.id, "jid": job_id, "meta": meta, "lo": seqs.start, "hi": seqs.stop - 1})
        conn.execute(text(
            "UPDATE event_counters SET last_seq = :hi"
            " WHERE subject_type = 'job' AND subject_id = CAST(:jid AS uuid)"
        ), {"jid": job_id, "hi": seqs.stop - 1})


def test_a_ten_thousand_event_replay_goes_out_in_pages_in_order(stack, domain, client, tenant):
    proc = stack.start("relay", RELAY_REPLAY_PAGE=500, RELAY_SEND_QUEUE_MAX=1000)
    stack.wait_http(proc)
    relay = stack.url(proc)
    job_id = client.submit("echo", {}, countdown_s=3600)["id"]  # waits: no worker touches it
    _store_events(job_id, tenant[1], range(2, 10_002))
    reader = EventClient(relay, tenant[0])
    try:
        pages_before = metric(relay, "orchestra_relay_replay_pages_total")
        acks = []
        subscriber = threading.Thread(
            target=lambda: acks.append(reader.subscribe(f"job:{job_id}", since=0)))
        subscriber.start()
        wait_until(lambda: len(reader.of(job_id)) >= 1000, 60, 0.02, "the replay under way")
        for seq in range(10_002, 10_102):  # live events while the replay runs
            _store_events(job_id, tenant[1], range(seq, seq + 1))
            publish(domain, [envelope(tenant[1].name, job_id, seq)])
        subscriber.join(60)
        assert acks == [{"ok": True}]
        wait_until(lambda: len(reader.of(job_id)) >= 10_101, 60, 0.05, "every event")
        seqs = [e["seq"] for e in reader.of(job_id)]
        assert seqs == list(range(1, 10_102)), "out of order, duplicated or missing"
        pages = metric(relay, "orchestra_relay_replay_pages_total") - pages_before
        print(f"10,101 events replayed and live in {pages:.0f} pages of at most 500")
        assert pages >= 10_000 / 500
    finally:
        reader.close()

"""The end-to-end run's client processes: HTTP submitters and one Socket.IO listener.

Each runs in a process of its own (spawned: nothing of the parent's connections or threads
is inherited), so the clients do not share a GIL with each other or with the bench.
Times are `time.time()`: the wall clock is the one the worker's event timestamps use.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import redis
import requests
import socketio

_FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Target:
    """Where the clients go and who they are."""

    api_url: str
    relay_url: str
    secret: str
    # The tenant's pub/sub channel: where the relay itself reads the events.
    redis_url: str = ""
    channel: str = ""


def _report(out, source: str, env: dict, received: float) -> None:
    payload = env.get("payload") or {}
    if env.get("event_type") == "job.status.updated" and payload.get("status") in _FINAL:
        out.put((source, env["event_id"], payload["job_id"], payload["status"], received))


def _tap(target: Target, out, stop, subscribed: threading.Event) -> None:
    """Beside the relay, read the same Redis channel: when each event reached Redis."""
    ps = redis.Redis.from_url(target.redis_url).pubsub(ignore_subscribe_messages=True)
    ps.subscribe(target.channel)
    ps.get_message(timeout=5)  # the subscribe confirmation
    subscribed.set()
    while not stop.is_set():
        msg = ps.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            _report(out, "redis", json.loads(msg["data"]), time.time())
    ps.close()


def listen(target: Target, out, ready, stop) -> None:
    """Join the `tenant` room; put `(source, event_id, job_id, status, received_at)` of each
    final status on `out`, once as the Socket.IO client got it (`sio`) and once as a plain
    Redis subscriber of the tenant's channel got it (`redis`), to split the latency.

    `ready` is set once both are subscribed; runs until `stop` is set.
    """
    sio = socketio.Client(reconnection=False)
    sio.on("event", lambda env: _report(out, "sio", env, time.time()))
    tapped = threading.Event()
    tap = threading.Thread(target=_tap, args=(target, out, stop, tapped), daemon=True)
    tap.start()
    tapped.wait(10)

    sio.connect(
        target.relay_url, auth={"token": target.secret}, transports=["websocket"], wait_timeout=30
    )
    ack = sio.call("subscribe", {"room": "tenant"}, timeout=30)
    if ack != {"ok": True}:
        raise RuntimeError(f"subscribe refused: {ack}")
    ready.set()
    stop.wait()
    sio.disconnect()
    tap.join(5)


def post_echo(session: requests.Session, url: str, i: int) -> tuple[str, float, float]:
    """One `POST /api/v1/jobs` of an echo job: `(job_id, started_at, latency_s)`."""
    started = time.time()
    t0 = time.perf_counter()
    resp = session.post(url, json={"kind": "echo", "params": {"i": i}}, timeout=30)
    latency = time.perf_counter() - t0
    if resp.status_code != 202:
        raise RuntimeError(f"POST /api/v1/jobs answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()["id"], started, latency


def open_session(target: Target) -> requests.Session:
    """A session carrying the key, on one keep-alive connection as a real client holds."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {target.secret}"
    return session


def _wait_start(ready, go, until) -> float:
    """Say this process is up, wait for the starting shot; the shared end time."""
    ready.release()
    go.wait()
    return until.value


def submit_closed(target: Target, start, window: int, submitted, received, out) -> None:
    """Submit back to back until the end, holding at most `window` jobs unfinished in all.

    Puts `(samples, CPU seconds from the shot on)` on `out`. `submitted` and `received` are
    shared counters (every submitter and the listener):
    the window keeps the broker's queue short, so what is measured is the sustained
    rate, not how fast a backlog piles up.
    """
    session, url, samples = open_session(target), f"{target.api_url}/api/v1/jobs", []
    until = _wait_start(*start)
    cpu0 = time.process_time()  # from the shot on: the client's boot is no job's cost
    while time.time() < until:
        if submitted.value - received.value >= window:
            time.sleep(0.002)
            continue
        with submitted.get_lock():
            submitted.value += 1
        samples.append(post_echo(session, url, len(samples)))
    session.close()
    out.put((samples, time.process_time() - cpu0))


def submit_open(target: Target, start, offset: float, interval: float, out) -> None:
    """Submit one job every `interval` seconds from the start plus `offset`, until the end
    (open loop: arrivals do not wait for answers, unless one takes longer than the interval)."""
    session, url, samples = open_session(target), f"{target.api_url}/api/v1/jobs", []
    until = _wait_start(*start)
    due = time.time() + offset
    cpu0 = time.process_time()
    while due < until:
        time.sleep(max(0.0, due - time.time()))
        samples.append(post_echo(session, url, len(samples)))
        due += interval
    session.close()
    out.put((samples, time.process_time() - cpu0))

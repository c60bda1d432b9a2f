"""A real python-socketio client that collects the relay's events."""

from __future__ import annotations

import threading

import socketio

from tests.support.stack import wait_until


def _handle_messages_in_order(sio: socketio.Client) -> None:
    """Handle each message on the client's read thread, in the order it came off the wire.

    python-engineio's threaded client hands every message to a thread of its own, so two
    events sent in order can be appended out of order, and a test of the relay's ordering
    would fail on the client's doing (seen: seq 2 recorded before seq 1). Replaces one
    private method of the engine.io client, for tests only: no option of the library does it.
    """
    eio = sio.eio
    trigger = eio._trigger_event

    def in_order(event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return trigger(event, *args, **kwargs)

    eio._trigger_event = in_order


class EventClient:
    """Connects to a relay with a key, subscribes, and keeps every `event` it receives."""

    def __init__(self, url: str, secret: str):
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("event", self._on_event)
        _handle_messages_in_order(self.sio)
        self.sio.connect(url, auth={"token": secret}, transports=["websocket"], wait_timeout=10)

    def _on_event(self, envelope: dict) -> None:
        with self._lock:
            self.events.append(envelope)

    def subscribe(self, room: str, since: int | None = None) -> dict:
        data = {"room": room} if since is None else {"room": room, "since": since}
        return self.sio.call("subscribe", data, timeout=10)

    def unsubscribe(self, room: str) -> dict:
        return self.sio.call("unsubscribe", {"room": room}, timeout=10)

    def of(self, subject_id: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["subject"]["id"] == subject_id]

    def wait_for_status(self, job_id: str, status: str, timeout: float = 30) -> list[dict]:
        """Wait for the job's event with `status`; return all the job's events so far."""

        def seen():
            evs = self.of(job_id)
            return any(e["payload"].get("status") == status for e in evs) and evs

        return wait_until(seen, timeout, 0.05, f"event {status} of job {job_id}")

    def close(self) -> None:
        self.sio.disconnect()

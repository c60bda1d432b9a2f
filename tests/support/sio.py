"""A real python-socketio client that collects the relay's events."""

from __future__ import annotations

import threading

import socketio

from tests.support.stack import wait_until


class EventClient:
    """Connects to a relay with a key, subscribes, and keeps every `event` it receives."""

    def __init__(self, url: str, secret: str):
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("event", self._on_event)
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

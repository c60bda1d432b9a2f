"""A real python-socketio client that collects the relay's events."""

from __future__ import annotations

import json
import socket
import threading
import time

import socketio
import websocket

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
        # Only events (Socket.IO packet type 2): a DISCONNECT handled on the read thread
        # would make the client join that very thread.
        if event == "message" and args and str(args[0]).startswith("2"):
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


class RawEngineIO:
    """An Engine.IO client spoken by hand over a raw WebSocket: it opens the transport and
    then does only what a test tells it (a client that never authenticates, or stops reading).
    """

    def __init__(self, relay_url: str, rcvbuf: int | None = None, origin: str | None = None):
        url = relay_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        opts = {} if rcvbuf is None else {
            "sockopt": ((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf),)}
        if origin is not None:
            opts["origin"] = origin
        try:
            self.ws = websocket.create_connection(url, timeout=10, **opts)
            self.open = self.ws.recv()
        except (websocket.WebSocketException, OSError) as exc:
            raise ConnectionRefusedError(f"no engine.io open: {exc!r}") from exc
        if not self.open.startswith("0"):  # engine.io open
            raise ConnectionRefusedError(f"no engine.io open: {self.open!r}")
        self.opened_at = time.monotonic()

    def send(self, text: str) -> None:
        self.ws.send(text)

    def recv(self) -> str:
        return self.ws.recv()

    def connect(self, secret: str) -> str:
        """Send the Socket.IO connect with `secret`; the relay's answer (`40…` or `44…`)."""
        self.send("40" + json.dumps({"token": secret}))
        return self.recv()

    def wait_closed(self, timeout: float) -> float:
        """Read (answering pings) until the relay closes the transport; seconds it stayed open."""
        self.ws.settimeout(timeout)
        try:
            while True:
                frame = self.ws.recv()
                if not frame or frame == "1":  # closed, or engine.io CLOSE
                    break
                if frame == "2":
                    self.send("3")  # alive: only the missing auth may close us
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            pass
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"the relay kept the transport open for {timeout}s") from None
        return time.monotonic() - self.opened_at

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - it may be closed already
            pass

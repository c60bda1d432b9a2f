"""The relay's hold on its transports: how much a client owes, and closing it for good.

python-engineio queues every packet of a socket without bound until its writer sends it,
and has no option to bound that queue; the relay reads the queue's length before each send
(`pending`) and drops a client that owes too much (`drop`). Dropping also closes the
Engine.IO transport: a Socket.IO disconnect alone leaves it open.
"""

from __future__ import annotations

import logging
import socket as _socket

from prometheus_client import Gauge

from api.relay.connections import DROPS, METRICS, socketio

log = logging.getLogger(__name__)


def _eio():
    return socketio.server.eio


def eio_socket(sid: str):
    """The Engine.IO socket of a Socket.IO client, or None once it is gone."""
    server = socketio.server
    if server is None:
        return None
    eio_sid = server.manager.eio_sid_from_sid(sid, "/")
    sock = _eio().sockets.get(eio_sid) if eio_sid else None
    return None if sock is None or sock.closed or sock.closing else sock


def pending(sid: str) -> int | None:
    """Packets queued for the client and not yet written, or None if it is gone."""
    sock = eio_socket(sid)
    return None if sock is None else sock.queue.qsize()


def _queued_total() -> int:
    server = socketio.server
    if server is None:
        return 0
    return sum(s.queue.qsize() for s in list(server.eio.sockets.values()))


Gauge(
    "orchestra_relay_queued_packets",
    "Packets queued on this relay's sockets, not yet written to their clients",
    registry=METRICS,
).set_function(_queued_total)


def _abort_transport(eio_sock) -> None:
    """Shut the TCP connection of a websocket down, so a writer blocked on a client that
    stopped reading fails at once and frees its queue (gevent-websocket gives no abort)."""
    environ = socketio.server.environ.get(eio_sock.sid) or {}
    ws = environ.get("wsgi.websocket")
    raw = getattr(getattr(ws, "handler", None), "socket", None)
    if raw is not None:
        try:
            raw.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass


def close_eio(eio_sock, reason: str, abort: bool = False) -> None:
    """Close an Engine.IO socket without waiting for its queue to drain."""
    DROPS.labels(reason).inc()
    if abort:
        _abort_transport(eio_sock)
    # wait=False: a close that waits for the queue would wait forever on a client that
    # stopped reading. The CLOSE packet is queued for a client that still reads.
    eio_sock.close(wait=False, abort=abort)
    _eio().sockets.pop(eio_sock.sid, None)


def _drop_now(sid: str, reason: str, abort: bool) -> None:
    sock = eio_socket(sid)
    if sock is None:
        return
    log.info("relay: dropping a client (%s)", reason)
    try:
        socketio.server.disconnect(sid)  # the client hears why: a Socket.IO DISCONNECT
    except Exception:  # noqa: BLE001 - the transport is closed below all the same
        log.exception("relay: socket.io disconnect failed")
    close_eio(sock, reason, abort)


def drop(sid: str, reason: str, abort: bool = False) -> None:
    """Disconnect a client and close its transport, in a greenlet of its own: the caller
    (the listener, a send) must not wait on the disconnect handler's Redis call."""
    socketio.start_background_task(_drop_now, sid, reason, abort)

"""The relay's seams of the domain's `Stream` (`app/streams/`): Socket.IO and greenlets.

The stream decides what each subscription is sent and when (in order, no duplicate, gaps
filled, replays paged, catch-up after a Redis loss); this module gives it the transport:
`_send` (bounded by the client's send queue, counted), `_make_room` (waits for that queue to
drain before the next replay page), `_drop`, greenlets for its workers and gevent's events for
a subscribe to wait on. Reads of stored events are counted as replay pages.
"""

from __future__ import annotations

import time

from api.relay import sockets
from api.relay.connections import DELIVERIES, REPLAY_PAGES, limits, socketio
from app.streams import Stream, Subscription, stored_subject

# How long a replay waits for a client to make room in its send queue before dropping it
# (Engine.IO itself gives up on a silent client after its ping interval plus timeout).
STALL_S = 30.0
_ROOM_POLL_S = 0.02


def _drop(sub: Subscription) -> None:
    sub.closed = True
    sockets.drop(sub.client, "send_queue", abort=True)


def _send(sub: Subscription, envelope: dict) -> bool:
    """Queue one event for the client, or drop the client if it owes too much already."""
    owed = sockets.pending(sub.client)
    if owed is None or sub.closed:
        return False
    if owed >= limits.send_queue_max:
        _drop(sub)
        return False
    socketio.emit("event", envelope, to=sub.client)
    DELIVERIES.inc()
    return True


def _make_room(sub: Subscription, room: int) -> bool:
    """Wait until the client's send queue can take `room` more packets (False: it is gone).

    Engine.IO tells no one when a socket's writer drains its queue, so this polls its length.
    """
    deadline = time.monotonic() + STALL_S
    while True:
        owed = sockets.pending(sub.client)
        if owed is None or sub.closed:
            return False
        if owed + room <= limits.send_queue_max:
            return True
        if time.monotonic() > deadline:
            _drop(sub)
            return False
        socketio.sleep(_ROOM_POLL_S)


def _read_page(*args, **kwargs) -> list[dict]:
    """A page of one subject's stored events, counted for /metrics."""
    rows = stored_subject(*args, **kwargs)
    REPLAY_PAGES.inc()
    return rows


stream = Stream(
    _send,
    make_room=_make_room,
    drop=_drop,
    spawn=socketio.start_background_task,
    new_event=lambda: socketio.server.eio.create_event(),
    read_subject=_read_page,
    page=lambda: limits.page,
    backlog_max=lambda: limits.send_queue_max,
)

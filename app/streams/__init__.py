"""Resumable event streams, with no transport in them: the relay's logic, unit-testable.

`rooms` says which rooms a key may join and which rooms an event goes to; `stream` keeps a
subscription's positions and decides, for each event, whether it is a duplicate, the next one,
or after a gap to fill; it pages replays and catches subscriptions up after a loss of the live
feed. The relay (`api/relay/`) wires a `Stream` to Socket.IO and to its greenlets.
"""

from app.streams.rooms import RoomRefused, readable_types, resolve_room, rooms_of
from app.streams.stream import (
    CLOCK_MARGIN,
    Positions,
    Replay,
    Stream,
    Subscription,
    stored_subject,
    stored_tenant,
    subscription,
)

__all__ = [
    "CLOCK_MARGIN",
    "Positions",
    "Replay",
    "RoomRefused",
    "Stream",
    "Subscription",
    "readable_types",
    "resolve_room",
    "rooms_of",
    "stored_subject",
    "stored_tenant",
    "subscription",
]

"""The relay's state in this process: the Socket.IO server, who is connected, who is where."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask_socketio import SocketIO
from prometheus_client import CollectorRegistry, Counter, Gauge

from app import tenants
from app.streams import Subscription

socketio = SocketIO()


class Connections:
    """Which clients are connected (and with which key), and who is in which room."""

    def __init__(self) -> None:
        self.tenants: dict[str, tenants.TenantRef] = {}
        self.rooms: dict[str, dict[str, Subscription]] = {}
        self.rooms_by_sid: dict[str, set[str]] = {}

    def subscriptions(self, room: str) -> list[Subscription]:
        return list(self.rooms.get(room, {}).values())

    def all(self) -> list[Subscription]:
        return [sub for subs in list(self.rooms.values()) for sub in list(subs.values())]

    def room_count(self, sid: str) -> int:
        return len(self.rooms_by_sid.get(sid, ()))

    def in_room(self, sid: str, room: str) -> bool:
        return room in self.rooms_by_sid.get(sid, ())

    def add(self, sub: Subscription) -> None:
        """Put `sub` in its room, replacing (and closing) the client's earlier one there."""
        old = self.rooms.setdefault(sub.room, {}).get(sub.client)
        if old is not None:
            old.closed = True
        self.rooms[sub.room][sub.client] = sub
        self.rooms_by_sid.setdefault(sub.client, set()).add(sub.room)

    def remove(self, sid: str, room: str, sub: Subscription | None = None) -> None:
        """Take the client out of `room` (only if it is still `sub` there, when given)."""
        subs = self.rooms.get(room, {})
        current = subs.get(sid)
        if current is None or (sub is not None and current is not sub):
            return
        current.closed = True
        del subs[sid]
        if not subs:
            self.rooms.pop(room, None)
        self.rooms_by_sid.get(sid, set()).discard(room)

    def drop_client(self, sid: str) -> None:
        self.tenants.pop(sid, None)
        for room in list(self.rooms_by_sid.pop(sid, ())):
            subs = self.rooms.get(room, {})
            sub = subs.pop(sid, None)
            if sub is not None:
                sub.closed = True
            if not subs:
                self.rooms.pop(room, None)

    def sids_of_key(self, key_id: uuid.UUID) -> list[str]:
        return [sid for sid, t in list(self.tenants.items()) if t.key_id == key_id]

    def key_ids(self) -> set[uuid.UUID]:
        return {t.key_id for t in list(self.tenants.values()) if t.key_id is not None}


connections = Connections()

METRICS = CollectorRegistry()
Gauge(
    "orchestra_relay_connections", "Socket.IO clients connected to this relay", registry=METRICS
).set_function(lambda: len(connections.tenants))
Gauge(
    "orchestra_relay_subscriptions", "Room subscriptions on this relay", registry=METRICS
).set_function(lambda: len(connections.all()))

# Counted in-process: one relay is one gunicorn worker, so its /metrics sees every delivery.
DELIVERIES = Counter(
    "orchestra_relay_deliveries",
    "Events sent to Socket.IO clients by this relay (replays and live)",
    registry=METRICS,
)
REPLAY_PAGES = Counter(
    "orchestra_relay_replay_pages",
    "Pages of stored events read from Postgres (replays, gap fills, catch-ups)",
    registry=METRICS,
)
DROPS = Counter(
    "orchestra_relay_dropped_connections",
    "Connections this relay closed: revoked key, no auth in time, send queue overflow",
    ["reason"],
    registry=METRICS,
)


@dataclass
class Limits:
    """The relay's bounds, from the settings (`RELAY_*`; see `app/config.py`)."""

    rooms_per_socket: int = 1000
    sockets_per_key: int = 100
    auth_timeout_s: float = 5.0
    send_queue_max: int = 1000
    replay_page: int = 500
    key_recheck_s: float = 1.0

    @classmethod
    def of(cls, settings) -> Limits:
        return cls(
            rooms_per_socket=settings.relay_max_rooms_per_socket,
            sockets_per_key=settings.relay_max_sockets_per_key,
            auth_timeout_s=settings.relay_auth_timeout_s,
            send_queue_max=settings.relay_send_queue_max,
            replay_page=settings.relay_replay_page,
            key_recheck_s=settings.relay_key_recheck_s,
        )

    @property
    def page(self) -> int:
        """Events per replay page: at most half the send queue, so a page always fits."""
        return max(1, min(self.replay_page, self.send_queue_max // 2))


limits = Limits()

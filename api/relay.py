"""The Socket.IO relay: auth at connect, subscribe with replay, Redis listener -> clients.

Run it with gunicorn's gevent-websocket worker (see the Procfile). The relay owns no
truth: it replays from Postgres and forwards from Redis pub/sub, so it may be restarted
or scaled out at will. It sets no Socket.IO `message_queue`: every replica already
hears every event from Redis.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from flask import Flask, Response, request
from flask_socketio import SocketIO
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from app import bootstrap, db, events, pubsub, tenants
from app.agents.core import load as load_agent
from app.config import Settings
from app.errors import NotFound, Unavailable
from app.jobs import load as load_job

log = logging.getLogger(__name__)

# Event times come from the clocks of the processes that wrote them; reading "since a moment"
# a little earlier than that moment costs at most a few extra events, never a missing one.
CLOCK_MARGIN = timedelta(seconds=2)

socketio = SocketIO()


class Positions(OrderedDict):
    """Last `seq` sent per subject, forgetting the least recently active beyond a bound.

    A tenant room sees every job of the tenant; without a bound a long-lived client's
    positions would grow forever. A duplicate of a subject silent for that long is unlikely.
    """

    MAX_SUBJECTS = 10_000

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.MAX_SUBJECTS:
            self.popitem(last=False)


@dataclass
class Subscription:
    """One client in one room, with the last `seq` it was sent of each subject.

    Socket.IO rooms broadcast blindly; a resumable stream needs per-client positions to
    drop duplicates and fill gaps, so the relay keeps its own registry.
    """

    sid: str
    room: str
    since: int = 0
    # The subject types this client's key may read (`job`, `agent`): a tenant room sends
    # only those.
    kinds: frozenset[str] = frozenset({"job", "agent"})
    # For a room of many subjects (tenant, card): whose events, and since when. Its stream
    # starts at subscription time and is complete from then on (see `deliver`, `resume`).
    tenant_id: uuid.UUID | None = None
    card_id: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC) - CLOCK_MARGIN)
    last: Positions = field(default_factory=Positions)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registry:
    """Which clients are in which room, and who each client is."""

    def __init__(self) -> None:
        self.tenants: dict[str, tenants.TenantRef] = {}
        self.rooms: dict[str, dict[str, Subscription]] = {}

    def subscriptions(self, room: str) -> list[Subscription]:
        return list(self.rooms.get(room, {}).values())

    def all(self) -> list[Subscription]:
        return [sub for subs in list(self.rooms.values()) for sub in list(subs.values())]

    def add(self, sub: Subscription) -> None:
        self.rooms.setdefault(sub.room, {})[sub.sid] = sub

    def remove(self, sid: str, room: str) -> None:
        subs = self.rooms.get(room, {})
        subs.pop(sid, None)
        if not subs:
            self.rooms.pop(room, None)

    def drop_client(self, sid: str) -> None:
        self.tenants.pop(sid, None)
        for room in list(self.rooms):
            self.remove(sid, room)


registry = Registry()

_metrics = CollectorRegistry()
Gauge(
    "orchestra_relay_connections", "Socket.IO clients connected to this relay", registry=_metrics
).set_function(lambda: len(registry.tenants))
Gauge(
    "orchestra_relay_subscriptions", "Room subscriptions on this relay", registry=_metrics
).set_function(lambda: len(registry.all()))


# Counted in-process: one relay is one gunicorn worker, so its /metrics sees every delivery.
DELIVERIES = Counter(
    "orchestra_relay_deliveries",
    "Events sent to Socket.IO clients by this relay (replays and live)",
    registry=_metrics,
)


def _log_fields(envelope: dict) -> dict:
    """The log context of an event: its correlation id and subject (`job_id` / `agent_id`)."""
    subject = envelope["subject"]
    return {
        "correlation_id": envelope["metadata"].get("correlation_id"),
        f"{subject['type']}_id": subject["id"],
        "event_type": envelope["event_type"],
        "seq": envelope["seq"],
    }


class RoomRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


_READ_SCOPE = {"job": "jobs:read", "agent": "agents:read"}


def readable_kinds(tenant: tenants.TenantRef) -> frozenset[str]:
    """The subject types whose events this key may read."""
    return frozenset(kind for kind, scope in _READ_SCOPE.items() if tenant.allows(scope))


def resolve_room(tenant: tenants.TenantRef, room) -> tuple[str, tuple[str, str] | None]:
    """The registry key of a room the tenant may join, and its subject if it has one."""
    if not isinstance(room, str) or not room or len(room) > 300 or "\x00" in room:
        raise RoomRefused("VALIDATION_ERROR", "room must be a non-empty string")
    kind, _, ident = room.partition(":")
    needs = {"job": "job", "card": "job", "agent": "agent"}.get(kind)
    kinds = readable_kinds(tenant)
    if (needs and needs not in kinds) or (kind == "tenant" and not kinds):
        scope = _READ_SCOPE[needs or "job"]
        raise RoomRefused("FORBIDDEN", f"this key lacks the {scope} scope")
    if kind == "tenant":
        if ident and ident != tenant.name:
            raise RoomRefused("FORBIDDEN", "another tenant's room")
        return f"tenant:{tenant.name}", None
    if kind == "card" and ident:
        return f"card:{tenant.name}:{ident}", None
    if kind == "job" and ident:
        try:
            with db.transaction() as conn:
                job = load_job(conn, ident, tenant.id)
        except NotFound:
            raise RoomRefused("NOT_FOUND", "no such job") from None
        return f"job:{job['id']}", ("job", str(job["id"]))
    if kind == "agent" and ident:
        try:
            with db.transaction() as conn:
                agent = load_agent(conn, ident, tenant.id)
        except NotFound:
            raise RoomRefused("NOT_FOUND", "no such agent") from None
        return f"agent:{agent['id']}", ("agent", str(agent["id"]))
    raise RoomRefused(
        "VALIDATION_ERROR", "room must be job:<id>, agent:<id>, card:<id> or tenant"
    )


def _send(sid: str, envelope: dict) -> None:
    socketio.emit("event", envelope, to=sid)
    DELIVERIES.inc()


def deliver(sub: Subscription, envelope: dict) -> None:
    """Send one event to one client: in order, no duplicate, gaps filled from Postgres."""
    subject = (envelope["subject"]["type"], envelope["subject"]["id"])
    seq = envelope["seq"]
    with sub.lock:
        last = sub.last.get(subject)
        if last is not None and seq <= last:
            return
        if seq > (last or 0) + 1:
            # A gap: what was published while we were away, or (first sight of a subject in a
            # tenant or card room) its earlier events since this client subscribed.
            after = sub.started_at if last is None else None
            with db.transaction() as conn:
                missing = events.for_subject(conn, *subject, last or 0, seq - 1, after)
            for env in missing:
                _send(sub.sid, env)
        _send(sub.sid, envelope)
        sub.last[subject] = seq


def catch_up(sub: Subscription) -> None:
    """Send every stored event of the subscription's known subjects it has not yet sent."""
    with sub.lock:
        for (stype, sid_), last in list(sub.last.items()):
            with db.transaction() as conn:
                missed = events.for_subject(conn, stype, sid_, last)
            for env in missed:
                _send(sub.sid, env)
                sub.last[(stype, sid_)] = env["seq"]


def resume(sub: Subscription, lost_at: datetime) -> None:
    """After the Redis listener was away since `lost_at`: send what the subscription missed.

    A job or agent room knows its subject: catch up from its last `seq`. A tenant or card room
    may have missed subjects it never saw: replay the room's events since the loss through
    `deliver`, which drops what was sent and fills what was not.
    """
    if sub.tenant_id is None:
        catch_up(sub)
        return
    with db.transaction() as conn:
        missed = events.for_tenant(conn, sub.tenant_id, lost_at - CLOCK_MARGIN, sub.card_id)
    for env in missed:
        if env["subject"]["type"] in sub.kinds:
            deliver(sub, env)


def rooms_of(envelope: dict) -> list[str]:
    """The registry keys an event goes to."""
    tenant = envelope["metadata"]["tenant"]
    subject = envelope["subject"]
    rooms = [f"tenant:{tenant}", f"{subject['type']}:{subject['id']}"]
    card_id = envelope["metadata"].get("card_id")
    if card_id:
        rooms.append(f"card:{tenant}:{card_id}")
    return rooms


def dispatch_message(data) -> None:
    """Route one pub/sub message to every subscription it concerns."""
    try:
        envelope = json.loads(data)
        rooms = rooms_of(envelope)
    except (ValueError, KeyError, TypeError):
        log.warning("relay: malformed message dropped: %r", data[:200])
        return
    kind, clients = envelope["subject"]["type"], 0
    for room in rooms:
        for sub in registry.subscriptions(room):
            if kind not in sub.kinds:
                continue
            clients += 1
            try:
                deliver(sub, envelope)
            except Exception:  # noqa: BLE001 - one client's failure must not stop the stream
                log.exception("relay: delivery to %s in %s failed", sub.sid, room)
    if clients:  # one line per event, not per client: the log grows with events only
        log.info("relay: event to %d subscriptions", clients, extra=_log_fields(envelope))


def listen_forever(stop: threading.Event | None = None) -> None:
    """Forward Redis pub/sub to clients; on reconnect, catch every subscription up."""
    backoff, lost_at = 0.2, None
    while stop is None or not stop.is_set():
        try:
            ps = pubsub.client().pubsub(ignore_subscribe_messages=True)
            ps.psubscribe(pubsub.channel_pattern())
            if lost_at is not None:  # events published while we were away
                for sub in registry.all():
                    resume(sub, lost_at)
            backoff, lost_at = 0.2, None
            while stop is None or not stop.is_set():
                msg = ps.get_message(timeout=1.0)
                if msg and msg.get("type") == "pmessage":
                    dispatch_message(msg["data"])
        except (redis.RedisError, OSError) as exc:
            lost_at = lost_at or datetime.now(UTC)
            log.warning("relay: redis listener lost (%s), reconnecting in %.1fs", exc, backoff)
            socketio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        except Exception:  # noqa: BLE001 - the listener must outlive any one bad event
            lost_at = lost_at or datetime.now(UTC)  # a new subscription follows: catch up too
            log.exception("relay: listener error")
            socketio.sleep(backoff)


def _ack_error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


@socketio.on("connect")
def on_connect(auth=None):
    """Refuse a connection without a valid key."""
    token = auth.get("token") if isinstance(auth, dict) else None
    tenant = tenants.authenticate(token) if isinstance(token, str) else None
    if tenant is None:
        raise ConnectionRefusedError("unauthorized: a valid auth.token is required")
    registry.tenants[request.sid] = tenant


@socketio.on("disconnect")
def on_disconnect(*_):
    """Forget the client."""
    registry.drop_client(request.sid)


@socketio.on("subscribe")
def on_subscribe(data=None):
    """Join a room; replay stored events after `since`, then forward live ones."""
    tenant = registry.tenants.get(request.sid)
    if tenant is None:
        return _ack_error("UNAUTHORIZED", "not connected")
    if not isinstance(data, dict):
        return _ack_error("VALIDATION_ERROR", "expected {room, since?}")
    since = data.get("since", 0)
    if since is None:
        since = 0
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        return _ack_error("VALIDATION_ERROR", "since must be a non-negative integer")
    try:
        room, subject = resolve_room(tenant, data.get("room"))
    except RoomRefused as exc:
        return _ack_error(exc.code, exc.message)
    except Unavailable as exc:
        return _ack_error(exc.code, exc.message)
    sub = Subscription(request.sid, room, since, readable_kinds(tenant))
    if subject is None:  # a tenant or card room
        sub.tenant_id = tenant.id
        sub.card_id = room.split(":", 2)[2] if room.startswith("card:") else None
    with sub.lock:
        # Registered before reading Postgres, so nothing published meanwhile is missed;
        # the listener waits on the lock and then drops what the replay already sent.
        registry.add(sub)
        if subject is not None:
            sub.last[subject] = since
    if subject is not None:
        try:
            catch_up(sub)
        except Unavailable as exc:
            registry.remove(request.sid, room)
            return _ack_error(exc.code, exc.message)
    log.info("relay: subscribed to %s since %d", room, since, extra=_room_fields(subject))
    return {"ok": True}


def _room_fields(subject: tuple[str, str] | None) -> dict:
    """The log context of a subscription: the subject's id, if the room has one."""
    return {} if subject is None else {f"{subject[0]}_id": subject[1]}


@socketio.on("unsubscribe")
def on_unsubscribe(data=None):
    """Leave a room."""
    tenant = registry.tenants.get(request.sid)
    if tenant is None or not isinstance(data, dict):
        return _ack_error("VALIDATION_ERROR", "expected {room}")
    try:
        room, _ = resolve_room(tenant, data.get("room"))
    except RoomRefused as exc:
        return _ack_error(exc.code, exc.message)
    registry.remove(request.sid, room)
    return {"ok": True}


def create_relay_app(settings: Settings | None = None) -> Flask:
    """Build the relay for `settings` and start its Redis listener."""
    settings = settings or Settings.from_env()
    bootstrap.configure_logging(settings)
    bootstrap.init(settings, kind="relay")
    app = Flask(__name__)
    app.config["SECRET_KEY"] = uuid.uuid4().hex
    origins = settings.relay_cors_origins
    socketio.init_app(
        app,
        async_mode=settings.relay_async_mode,
        cors_allowed_origins="*" if origins == "*" else origins.split(","),
    )
    if settings.relay_async_mode == "gevent":
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()  # psycopg2 would otherwise block every greenlet while it waits

    @app.get("/health/liveness")
    def liveness():
        """200 while the relay runs."""
        return {"status": "alive", "clients": len(registry.tenants)}

    @app.get("/metrics")
    def metrics():
        """Prometheus text: connected clients and subscriptions of this relay."""
        return Response(generate_latest(_metrics), content_type=CONTENT_TYPE_LATEST)

    socketio.start_background_task(listen_forever)
    return app

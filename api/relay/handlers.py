"""The Socket.IO events: connect (auth and a seat), subscribe (with replay), unsubscribe."""

from __future__ import annotations

import logging

from flask import request

from api.relay import doors, sockets
from api.relay.connections import connections, limits, socketio
from api.relay.delivery import stream
from app import tenants
from app.errors import Unavailable
from app.streams import RoomRefused, resolve_room, subscription

log = logging.getLogger(__name__)


def _ack_error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


@socketio.on("connect")
def on_connect(auth=None):
    """Refuse a connection without a valid key, or past the key's sockets."""
    token = auth.get("token") if isinstance(auth, dict) else None
    # Always Postgres: a connect is rare, and a key revoked in SQL alone must not get in.
    ok = isinstance(token, str)
    tenant = tenants.authenticate(token, remembered=False) if ok else None
    if tenant is None:
        raise ConnectionRefusedError("unauthorized: a valid auth.token is required")
    if not doors.claim_seat(tenant, request.sid):
        raise ConnectionRefusedError(
            f"too many connections: this key holds {limits.sockets_per_key} already"
        )
    connections.tenants[request.sid] = tenant


@socketio.on("disconnect")
def on_disconnect(*_):
    """Forget the client and give its seat back."""
    tenant = connections.tenants.get(request.sid)
    connections.drop_client(request.sid)
    if tenant is not None:
        doors.release_seat(tenant, request.sid)


def _since(data) -> int | None:
    since = data.get("since", 0)
    if since is None:
        return 0
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        return None
    return since


def _still_valid(tenant: tenants.TenantRef) -> dict | None:
    """None if the key is still active, else the refusal (and the client is dropped)."""
    try:
        if tenants.key_active(tenant.key_id):
            return None
    except Unavailable as exc:
        return _ack_error(exc.code, exc.message)
    sockets.drop(request.sid, "revoked")
    return _ack_error("UNAUTHORIZED", "this key was revoked")


@socketio.on("subscribe")
def on_subscribe(data=None):
    """Join a room; replay stored events after `since`, then forward live ones."""
    tenant = connections.tenants.get(request.sid)
    if tenant is None:
        return _ack_error("UNAUTHORIZED", "not connected")
    if not isinstance(data, dict):
        return _ack_error("VALIDATION_ERROR", "expected {room, since?}")
    since = _since(data)
    if since is None:
        return _ack_error("VALIDATION_ERROR", "since must be a non-negative integer")
    if refused := _still_valid(tenant):  # every subscribe re-checks the key in Postgres
        return refused
    try:
        room, subject = resolve_room(tenant, data.get("room"))
    except (RoomRefused, Unavailable) as exc:
        return _ack_error(exc.code, exc.message)
    if not connections.in_room(request.sid, room) and (
        connections.room_count(request.sid) >= limits.rooms_per_socket
    ):
        return _ack_error(
            "TOO_MANY_ROOMS", f"a connection may be in {limits.rooms_per_socket} rooms at most"
        )
    return _join(tenant, room, subject, since)


def _join(tenant: tenants.TenantRef, room: str, subject, since: int) -> dict:
    sub = subscription(request.sid, room, subject, since, tenant)
    # A subject's room replays first; a tenant or card room is complete from now on.
    replay = None if subject is None else stream.start_replay(sub, subject)
    # Registered before reading Postgres, so nothing published meanwhile is missed: live
    # events wait behind the replay in the subscription's inbox, and duplicates are dropped.
    connections.add(sub)
    if replay is not None:
        stream.run_replay(sub)
        replay.done.wait()
        if replay.error is not None:
            connections.remove(request.sid, room, sub)
            return _ack_error(replay.error.code, replay.error.message)
    log.info("relay: subscribed to %s since %d", room, since, extra=_room_fields(subject))
    return {"ok": True}


def _room_fields(subject: tuple[str, str] | None) -> dict:
    """The log context of a subscription: the subject's id, if the room has one."""
    return {} if subject is None else {f"{subject[0]}_id": subject[1]}


@socketio.on("unsubscribe")
def on_unsubscribe(data=None):
    """Leave a room."""
    tenant = connections.tenants.get(request.sid)
    if tenant is None or not isinstance(data, dict):
        return _ack_error("VALIDATION_ERROR", "expected {room}")
    try:
        room, _ = resolve_room(tenant, data.get("room"))
    except (RoomRefused, Unavailable) as exc:
        return _ack_error(exc.code, exc.message)
    connections.remove(request.sid, room)
    return {"ok": True}

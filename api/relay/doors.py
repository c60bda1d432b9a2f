"""Who may stay connected: seats per key, keys rechecked, silent transports closed, origins.

- Seats: a key holds at most `limits.sockets_per_key` sockets across every relay, counted in
  one Redis sorted set per key (`<prefix>:relay:sockets:<key id>`, a member per socket whose
  score is its lease's expiry). Each relay renews its members' leases; a relay that died
  leaves members that expire. Redis away: counted in this process only.
- The warden (one greenlet, never the listener): every `limits.key_recheck_s` the keys of
  all connected sockets are checked in Postgres (a revocation notice can be missed while the
  listener reconnects), and an Engine.IO transport that has not completed a Socket.IO
  connect within `limits.auth_timeout_s` is closed.
"""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import urlsplit

import redis

from api.relay import sockets
from api.relay.connections import connections, limits, socketio
from app import pubsub, tenants
from app.errors import Unavailable

log = logging.getLogger(__name__)

RELAY_ID = uuid.uuid4().hex  # this process, in the members of the seat sets
SEAT_TTL_S = 30.0
_RENEW_CHUNK = 500  # members per ZADD: each chunk is a short hold of the loop
_TICK_S = 0.5  # the auth timeout holds to within this; each tick walks every transport

# Hand-written Lua: taking a seat must read the count and add in one step, or two relays
# admitting at once could both pass. Expired leases go first.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_claim_script = None


def _seat_key(key_id: uuid.UUID) -> str:
    return f"{pubsub.prefix()}:relay:sockets:{key_id}"


def _member(sid: str) -> str:
    return f"{RELAY_ID}:{sid}"


def claim_seat(tenant: tenants.TenantRef, sid: str) -> bool:
    """Whether the key may open one more socket (and if so, it now holds it)."""
    global _claim_script
    now = time.time()
    try:
        if _claim_script is None:
            _claim_script = pubsub.client().register_script(_CLAIM)
        args = [now, now + SEAT_TTL_S, _member(sid), limits.sockets_per_key, int(SEAT_TTL_S * 2)]
        return bool(_claim_script(keys=[_seat_key(tenant.key_id)], args=args))
    except redis.RedisError as exc:
        log.warning("relay: seats not counted in redis (%s): this process only", exc)
        return len(connections.sids_of_key(tenant.key_id)) < limits.sockets_per_key


def release_seat(tenant: tenants.TenantRef, sid: str) -> None:
    try:
        pubsub.client().zrem(_seat_key(tenant.key_id), _member(sid))
    except redis.RedisError:
        pass  # its lease expires


def _renew_seats() -> None:
    """Extend the leases of every socket this relay holds: one ZADD per key and chunk.

    Chunked, with a yield between chunks: 5,000 members renewed in one pipeline took one
    command and one reply each, and parsing those 10,000 replies held the gevent loop for
    half a second, which every client felt as a delivery stall (the relay bench's p99).
    """
    by_key: dict[str, list[str]] = {}
    held = connections.tenants
    for sid in list(held):  # keys only: see `Gatekeeper.sweep`
        tenant = held.get(sid)
        if tenant is not None:
            by_key.setdefault(_seat_key(tenant.key_id), []).append(_member(sid))
    client = pubsub.client()
    for key, members in by_key.items():
        for start in range(0, len(members), _RENEW_CHUNK):
            expires = time.time() + SEAT_TTL_S
            chunk = members[start : start + _RENEW_CHUNK]
            pipe = client.pipeline(transaction=False)
            pipe.zadd(key, dict.fromkeys(chunk, expires))
            pipe.expire(key, int(SEAT_TTL_S * 2))
            pipe.execute()
            socketio.sleep(0)  # let deliveries run between chunks


def disconnect_keys(key_ids, reason: str = "revoked") -> int:
    """Drop every socket of these keys on this relay; return how many."""
    wanted = set(key_ids)
    sids = [sid for sid, t in list(connections.tenants.items()) if t.key_id in wanted]
    for sid in sids:
        sockets.drop(sid, reason)
    return len(sids)


def recheck_keys() -> None:
    """Drop the sockets of keys that are no longer active in Postgres."""
    held = connections.key_ids()
    if held:
        gone = held - tenants.active_keys(held)
        if gone and disconnect_keys(gone):
            log.info("relay: %d revoked key(s) found by the periodic check", len(gone))


class Gatekeeper:
    """Closes Engine.IO transports that never complete a Socket.IO connect in time."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}

    def sweep(self, now: float) -> None:
        """Walk the transports' ids, not `items()`: a list of 5,000 fresh (key, value) tuples
        every tick made the collector promote short-lived objects early, and the full
        collections that followed (0.4-0.75 s each with 5,000 clients, the gevent loop held
        throughout) came every few seconds: the relay bench's p99 stalls."""
        eio = socketio.server.eio
        manager = socketio.server.manager
        for eio_sid in list(self.first_seen):
            if eio_sid not in eio.sockets:
                del self.first_seen[eio_sid]
        for eio_sid in list(eio.sockets):
            sock = eio.sockets.get(eio_sid)
            if sock is None:
                continue
            sid = manager.sid_from_eio_sid(eio_sid, "/")
            if sid is not None and sid in connections.tenants:
                self.first_seen.pop(eio_sid, None)
                continue
            seen = self.first_seen.setdefault(eio_sid, now)
            if now - seen >= limits.auth_timeout_s and not (sock.closed or sock.closing):
                log.info("relay: closing a transport that did not authenticate in time")
                self.first_seen.pop(eio_sid, None)
                sockets.close_eio(sock, "auth_timeout")


def _step(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except (Unavailable, redis.RedisError) as exc:
        log.warning("relay: %s skipped: %s", what, exc)
    except Exception:  # noqa: BLE001 - the warden must outlive any one failure
        log.exception("relay: %s failed", what)


def watch_forever(stop=None) -> None:
    """The warden's loop: key rechecks, auth timeouts and seat renewals, each on its period."""
    gate = Gatekeeper()
    next_recheck = next_renew = time.monotonic()
    while stop is None or not stop.is_set():
        now = time.monotonic()
        _step("auth timeout sweep", gate.sweep, now)
        if now >= next_recheck:
            next_recheck = now + limits.key_recheck_s
            _step("key recheck", recheck_keys)
        if now >= next_renew:
            next_renew = now + SEAT_TTL_S / 3
            _step("seat renewal", _renew_seats)
        socketio.sleep(_TICK_S)


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def default_origins(settings) -> set[str]:
    """The origins a relay accepts unless `RELAY_CORS_ORIGINS` says otherwise: its own and the
    API's on `BIND_HOST` (and `localhost` for a loopback bind), `CONSOLE_RELAY_URL`'s, and
    `API_CORS_ORIGINS` (pages allowed to call the API may follow its events too)."""
    hosts = {settings.bind_host}
    if settings.bind_host in ("127.0.0.1", "localhost", "::1"):
        hosts |= {"127.0.0.1", "localhost"}
    found = {
        f"http://{host}:{port}"
        for host in hosts
        for port in (settings.relay_port, settings.api_port)
    }
    extra = [settings.console_relay_url, *settings.api_cors_origins.split(",")]
    return found | {o for o in map(_origin, extra) if o}


def origin_policy(settings):
    """What `cors_allowed_origins` gets: `*`, the configured list, or the default's checker.

    The default also accepts, at the host the request came to (its `Host`), the relay's and
    the API's ports: a relay bound to 0.0.0.0 cannot know the names it is reached by, and the
    console is served by the API at the same host. python-socketio's websocket client sends
    the relay's own URL as `Origin`, so it passes.
    """
    configured = settings.relay_cors_origins.strip()
    if configured == "*":
        return "*"
    if configured:
        return [o.strip() for o in configured.split(",") if o.strip()]
    fixed = default_origins(settings)
    ports = {str(settings.relay_port), str(settings.api_port)}

    def allowed(origin, environ=None) -> bool:
        if origin in fixed:
            return True
        host = (environ or {}).get("HTTP_HOST", "")
        scheme = (environ or {}).get("wsgi.url_scheme", "http")
        parts = urlsplit(origin or "")
        if not host or parts.scheme != scheme or parts.port is None:
            return False
        return parts.hostname == urlsplit(f"//{host}").hostname and str(parts.port) in ports

    return allowed


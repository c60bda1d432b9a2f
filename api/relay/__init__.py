"""The Socket.IO relay: auth at connect, subscribe with replay, Redis listener -> clients.

Run it with gunicorn's gevent-websocket worker (see the Procfile): `api.relay:create_relay_app()`.
The relay owns no truth: it replays from Postgres and forwards from Redis pub/sub, so it may
be restarted or scaled out at will. It sets no Socket.IO `message_queue`: every replica
already hears every event from Redis.

The stream logic (positions, duplicates, gap fills, paged replays, catch-up after a Redis
loss, which rooms a key may join and where an event goes) is the domain's, in `app/streams/`,
with no Socket.IO in it. Here: `connections` (who is connected, who is where, limits, metrics),
`delivery` (the stream wired to Socket.IO and greenlets), `listener` (Redis -> the stream),
`doors` (seats per key, key rechecks, auth timeout, origins), `sockets` (send queue bound,
drops), `handlers` (the Socket.IO events).
"""

from __future__ import annotations

import gc
import uuid

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.relay import connections, doors, handlers, listener
from api.relay.connections import METRICS, socketio
from app import bootstrap, db
from app.config import Settings

__all__ = ["create_relay_app", "handlers", "socketio"]

# Python's collector, at its defaults (700, 10, 10), promoted the relay's short-lived objects
# so fast that a full collection ran every 4-13 s; with 5,000 clients one takes 0.4-0.75 s,
# holding the gevent loop (every client saw it: the relay bench's p99 of 500-800 ms). A
# young generation of 10,000 lets those objects die young: the full collections went from
# every few seconds to none in the bench's 15 s of traffic (p99 8-10 ms).
GC_THRESHOLDS = (10_000, 10, 10)


def create_relay_app(settings: Settings | None = None) -> Flask:
    """Build the relay for `settings` and start its Redis listener and its warden."""
    settings = settings or Settings.from_env()
    gc.set_threshold(*GC_THRESHOLDS)
    bootstrap.configure_logging(settings)
    bootstrap.init(settings, role="relay")
    limits = connections.Limits.of(settings)
    for name in vars(limits):  # the one shared instance the other modules read
        setattr(connections.limits, name, getattr(limits, name))
    app = Flask(__name__)
    app.config["SECRET_KEY"] = uuid.uuid4().hex
    socketio.init_app(
        app,
        async_mode=settings.relay_async_mode,
        cors_allowed_origins=doors.origin_policy(settings),
    )
    if settings.relay_async_mode == "gevent":
        db.cooperative_waits()

    @app.get("/health/liveness")
    def liveness():
        """200 while the relay runs."""
        return {"status": "alive", "clients": len(connections.connections.tenants)}

    @app.get("/metrics")
    def metrics():
        """Prometheus text: clients, subscriptions, deliveries, drops, queued packets."""
        return Response(generate_latest(METRICS), content_type=CONTENT_TYPE_LATEST)

    socketio.start_background_task(listener.listen_forever)
    socketio.start_background_task(doors.watch_forever)
    return app

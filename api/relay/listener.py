"""The Redis listener: routes events to subscriptions and revocation notices to the warden.

It only routes, through the domain's stream (`app/streams/`): whatever needs Postgres (gap
fills, catch-ups after a Redis loss) is queued for the subscription's own greenlet, and drops
run in greenlets of their own, so one slow query never holds up the events of every other
client.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime

import redis

from api.relay import doors
from api.relay.connections import connections, socketio
from api.relay.delivery import stream
from app import pubsub, tenants
from app.streams import rooms_of

log = logging.getLogger(__name__)


def _log_fields(envelope: dict) -> dict:
    """The log context of an event: its correlation id and subject (`job_id` / `agent_id`)."""
    subject = envelope["subject"]
    return {
        "correlation_id": envelope["metadata"].get("correlation_id"),
        f"{subject['type']}_id": subject["id"],
        "event_type": envelope["event_type"],
        "seq": envelope["seq"],
    }


def dispatch_message(data) -> None:
    """Route one pub/sub message to every subscription it concerns."""
    try:
        envelope = json.loads(data)
        rooms = rooms_of(envelope)
    except (ValueError, KeyError, TypeError):
        log.warning("relay: malformed message dropped: %r", data[:200])
        return
    clients = stream.fan_out(envelope, rooms, connections.subscriptions)
    if clients:  # one line per event, not per client: the log grows with events only
        log.info("relay: event to %d subscriptions", clients, extra=_log_fields(envelope))


def revoked_notice(data) -> None:
    """Disconnect the sockets of the keys a revocation notice names."""
    try:
        key_ids = {uuid.UUID(k) for k in json.loads(data)["key_ids"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("relay: malformed revocation notice dropped: %r", data[:200])
        return
    if count := doors.disconnect_keys(key_ids):
        log.info("relay: disconnecting %d socket(s) of revoked keys", count)


def _handle(msg: dict) -> None:
    if msg.get("type") == "pmessage":
        dispatch_message(msg["data"])
    elif msg.get("type") == "message":
        revoked_notice(msg["data"])


def listen_forever(stop: threading.Event | None = None) -> None:
    """Forward Redis pub/sub to clients; on reconnect, catch every subscription up."""
    backoff, lost_at = 0.2, None
    while stop is None or not stop.is_set():
        try:
            ps = pubsub.client().pubsub(ignore_subscribe_messages=True)
            ps.psubscribe(pubsub.channel_pattern())
            ps.subscribe(tenants.revocation_channel())
            if lost_at is not None:  # events published while we were away
                for sub in connections.all():
                    stream.resume(sub, lost_at)
            backoff, lost_at = 0.2, None
            while stop is None or not stop.is_set():
                msg = ps.get_message(timeout=1.0)
                if msg:
                    _handle(msg)
        except (redis.RedisError, OSError) as exc:
            lost_at = lost_at or datetime.now(UTC)
            log.warning("relay: redis listener lost (%s), reconnecting in %.1fs", exc, backoff)
            socketio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        except Exception:  # noqa: BLE001 - the listener must outlive any one bad event
            lost_at = lost_at or datetime.now(UTC)  # a new subscription follows: catch up too
            log.exception("relay: listener error")
            socketio.sleep(backoff)

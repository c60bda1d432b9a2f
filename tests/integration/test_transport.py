"""The broker transport: kombu's Redis transport with one client per channel for sending
(workers/transport.py), chosen for redis:// and rediss:// brokers."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import redis
from kombu import Connection

import celeryconfig
from workers import make_celery


def test_a_redis_broker_gets_our_transport_and_others_kombus():
    assert celeryconfig.broker_transport("redis://h:6379/0") == celeryconfig.TRANSPORT
    assert celeryconfig.broker_transport("rediss://h:6380/0") == celeryconfig.TRANSPORT
    assert celeryconfig.broker_transport("amqp://guest@h//") is None


@contextmanager
def clients_made(monkeypatch):
    """The `redis.Redis` clients built meanwhile (a list that grows by one per client)."""
    made = []
    real_init = redis.Redis.__init__

    def counting_init(self, *args, **kwargs):
        made.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    try:
        yield made
    finally:
        monkeypatch.undo()


def test_sending_makes_no_redis_client_per_message(domain, monkeypatch):
    celery = make_celery(domain)
    with celery.connection_for_write() as conn:
        assert type(conn.transport).__module__ == "workers.transport"
        queue = conn.SimpleQueue("transport-test")
        queue.put({"n": 0})  # the channel's client is made here
        with clients_made(monkeypatch) as made:
            for n in range(1, 20):
                queue.put({"n": n})
        got = [queue.get(timeout=5).payload["n"] for _ in range(20)]
        queue.clear()
        queue.close()
    assert got == list(range(20))
    assert made == []


def test_kombus_own_transport_makes_one_per_message(domain, monkeypatch):
    """What the override is for: without it, every message builds a client."""
    with Connection(domain.effective_broker_url) as conn:
        queue = conn.SimpleQueue("transport-test-kombu")
        queue.put({"n": 0})
        with clients_made(monkeypatch) as made:
            for n in range(1, 6):
                queue.put({"n": n})
        queue.clear()
        queue.close()
    assert len(made) >= 5


def _closing_after_loss(conn):
    """A channel holding an unacked message, in the state kombu leaves it when the broker
    connection was lost and closed before the channel (its transport's client gone, its
    pools disconnected): the worker's consumer then closes the channel."""
    queue = conn.SimpleQueue(f"transport-loss-{id(conn)}")
    queue.put({"n": 1})
    message = queue.get(timeout=5)  # delivered, not acked: the channel would restore it
    channel = message.channel
    conn.transport.client = None  # what `Connection._do_close_transport` does
    channel._disconnect_pools()
    return channel


def test_a_channel_closing_after_the_broker_went_does_not_kill_the_worker(domain):
    from workers.transport import Transport

    with Connection(domain.effective_broker_url, transport=Transport) as conn:
        channel = _closing_after_loss(conn)
        conn.maybe_close_channel(channel)  # kombu ignores the broker error it raises
    unacked = redis.Redis.from_url(domain.effective_broker_url).hlen("unacked")
    assert unacked >= 1  # the message waits in Redis for its restore, not lost


def test_kombus_own_channel_closing_after_the_broker_went_raises_what_kills_a_worker(domain):
    """What the guard is for: kombu's channel raises AttributeError, past its own ignore."""
    with Connection(domain.effective_broker_url) as conn:
        channel = _closing_after_loss(conn)
        with pytest.raises(AttributeError):
            conn.maybe_close_channel(channel)

"""The broker transport: kombu's Redis transport with one client per channel for sending
(workers/transport.py), chosen for redis:// and rediss:// brokers."""

from __future__ import annotations

from contextlib import contextmanager

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

"""Kombu's Redis transport, with one Redis client per channel for what it sends.

Kombu's Redis channel builds a new `redis.Redis` for every message it publishes (every
task sent, every task event a worker emits for Flower, every ack of a restored message):
`conn_or_acquire()` calls `_create_client()`, and redis-py's constructor fills a table of
some 170 response callbacks each time. Measured here, that was 40% of the CPU of a
`send_task`. A client is only a view of the channel's connection pool and is safe to share,
so this channel keeps one per pool; everything else is kombu's own.

A channel that closes after its connection went (Redis lost) tries to put its unacked
messages back through a pool it can no longer build (kombu reads the gone connection's
host: `AttributeError`, which kills the worker: "Unrecoverable error"). This channel says
the broker is away instead, an error kombu's close expects and ignores; the messages are
still in Redis's `unacked` hash, restored from there by kombu when their visibility timeout
passes, and the sweep sends again what the broker lost.

`batch_sender(celery)` is the outbox's way to send many messages at once (a batch of jobs):
kombu's own `Producer.batch()`, which this transport supports, buffers the LPUSHes of one
producer in a Redis pipeline and executes it when the batch ends.
"""

from __future__ import annotations

from contextlib import contextmanager

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sender = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        if self._pool is None and self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        pool = self.pool
        if self._sender is None or self._sender.connection_pool is not pool:
            self._sender = self._create_client()
        yield self._sender


class Transport(kombu_redis.Transport):
    Channel = Channel


def batch_sender(celery):
    """`batch()` for `app.outbox.configure`: a `send_task` whose messages leave in one
    pipelined round trip when the context exits (kombu raises `BatchPublishError` if that
    round trip failed: delivery uncertain, so the outbox counts none of them sent)."""

    @contextmanager
    def batch():
        # One producer (one channel, one pooled connection) for the batch instead of one
        # acquired per message; its batch is kombu's (max 1,000 commands a flush).
        with celery.producer_or_acquire() as producer, producer.batch():
            declared: set = set()

            def send(name, queue=None, **options):
                # Each queue is declared by the batch's first message to it: for every
                # other, kombu would check its cache and copy the queue (a quarter of a
                # send's CPU). Nothing leaves before the batch ends, so a send has nothing
                # to retry: the batch's one round trip fails or succeeds whole.
                declare = [] if queue in declared else None
                declared.add(queue)
                return celery.send_task(
                    name, producer=producer, queue=queue, declare=declare, retry=False,
                    **options,
                )

            yield send

    return batch

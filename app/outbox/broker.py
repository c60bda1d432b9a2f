"""What a Redis broker holds: the task ids waiting in a queue or handed to a worker.

Kombu's Redis transport moves a message from its queue (BRPOP) to the `unacked` hash in two
steps; a worker SIGKILLed between them loses the message for good (the soak found one in
3,000 jobs). Postgres still says the job waits, so the sweep asks the broker which of the
long-waiting ones it still holds and sends the others again. Hand-written because no
library exposes this: it reads Kombu's own key layout (a list per queue and priority,
`unacked`), read-only.
"""

from __future__ import annotations

import json

import redis

from app.outbox.send import ROWS_HEADER

UNACKED = "unacked"


def _row_ids(raw: bytes, unacked: bool) -> list:
    """The ids of the rows a message is for: its task id, and those of the rows that share
    it (`ROWS_HEADER`)."""
    try:
        message = json.loads(raw)
        if unacked:  # [message, exchange, routing key]
            message = message[0]
        headers = message["headers"]
        return [headers["id"], *headers.get(ROWS_HEADER, ())]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return []


def held_row_ids(client: redis.Redis, queues: list[str], sep: str = ":") -> set[str]:
    """Ids of the rows whose messages are in `queues` (every priority list) or unacked,
    read in that order.

    Queues first: a message moves from a queue to `unacked`, so reading in that order it
    is seen in one or the other (short of the gap this module exists for).
    """
    ids = set()
    for queue in queues:
        for name in [queue, *(f"{queue}{sep}{p}" for p in range(1, 10))]:
            for raw in client.lrange(name, 0, -1):
                ids.update(_row_ids(raw, False))
    for raw in client.hvals(UNACKED):
        ids.update(_row_ids(raw, True))
    return ids

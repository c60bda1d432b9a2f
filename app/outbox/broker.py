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

UNACKED = "unacked"


def _task_id(raw: bytes, unacked: bool) -> str | None:
    try:
        message = json.loads(raw)
        if unacked:  # [message, exchange, routing key]
            message = message[0]
        return message["headers"]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def held_task_ids(client: redis.Redis, queues: list[str], sep: str = ":") -> set[str]:
    """Ids of the tasks in `queues` (every priority list) or unacked, read in that order.

    Queues first: a message moves from a queue to `unacked`, so reading in that order it
    is seen in one or the other (short of the gap this module exists for).
    """
    ids = set()
    for queue in queues:
        for name in [queue, *(f"{queue}{sep}{p}" for p in range(1, 10))]:
            ids.update(_task_id(raw, False) for raw in client.lrange(name, 0, -1))
    ids.update(_task_id(raw, True) for raw in client.hvals(UNACKED))
    ids.discard(None)
    return ids

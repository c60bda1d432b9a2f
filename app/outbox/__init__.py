"""The outbox: everything that waits in Postgres for Redis or the broker, in one place.

`unit` the unit of work (state, events and what to send commit together; then publish and
send), `publish` events to Redis and their sweep, `send` the one way a row becomes a Celery
message (a `Sendable` per kind of row: jobs, agent commands) and the seam to Celery, `marks`
the batched `published_at` / `dispatched_at` writes, `sweep` due and lost dispatches,
`broker` what the broker holds, `names` every task name and queue.
"""

from app.outbox.marks import flush as flush_marks
from app.outbox.send import Sendable, configure, register
from app.outbox.unit import UnitOfWork, unit_of_work

__all__ = ["Sendable", "UnitOfWork", "configure", "flush_marks", "register", "unit_of_work"]

"""The fair order between tenants: who gets the next free slot.

Each tenant's candidates come in its own order (priority, then age) and already within its
limits; the tenant holding the fewest slots for its weight goes next (ties: whose next job
waited longest), so while tenants have work waiting their slots grow in proportion to their
weights, and a tenant that had none waiting is first for the next free one. Pure: the
admission pass (`admission.py`) reads the state and writes the outcome.
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass, field
from datetime import datetime

# The broker's lanes: each has a room of its own (SCHEDULER_AHEAD), so a backlog of one
# pool's jobs (the prefork `jobs` queue) never holds back another's (the gevent `io` queue).
JOBS_LANE, IO_LANE = "jobs", "io"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A waiting job that fits its tenant's and its key's limits; `cost` is what it takes
    of its lane's room in the broker (1, or less for a job that shares a message)."""

    id: uuid.UUID
    run_after: datetime
    cost: float = 1.0
    lane: str = JOBS_LANE


@dataclass
class TenantQueue:
    """A tenant's weight, the slots it holds now, and its candidates in its order."""

    tenant_id: uuid.UUID
    weight: float
    holding: float  # slots: an instant job holds a share of one
    candidates: list[Candidate] = field(default_factory=list)


_EPSILON = 1e-9  # shares of a slot are floats: 50 of 1/50 fill a room of 1


def pick(queues: list[TenantQueue], room: float | dict[str, float]) -> list[uuid.UUID]:
    """The candidates to admit, in fair order, while they fit in their lane's room in the
    broker (`room`: by lane, or one number for the jobs lane); a tenant whose next candidate
    of a lane does not fit takes no more of that lane (its own order holds within a lane),
    and goes on with its candidates of the others."""
    rooms = dict(room) if isinstance(room, dict) else {JOBS_LANE: room}
    heap = [(q.holding / q.weight, q.candidates[0].run_after, i)
            for i, q in enumerate(queues) if q.candidates]
    heapq.heapify(heap)
    taken: list[uuid.UUID] = []
    next_of = [0] * len(queues)
    blocked: list[set[str]] = [set() for _ in queues]  # each tenant's lanes it is done with
    while heap and any(r > _EPSILON for r in rooms.values()):
        _, _, i = heapq.heappop(heap)
        queue = queues[i]
        n = _next_fitting(queue.candidates, next_of[i], rooms, blocked[i])
        if n is None:
            continue
        chosen = queue.candidates[n]
        taken.append(chosen.id)
        rooms[chosen.lane] -= chosen.cost
        queue.holding += chosen.cost
        next_of[i] = n + 1
        if (after := _next_fitting(queue.candidates, n + 1, rooms, blocked[i])) is not None:
            nxt = queue.candidates[after]
            heapq.heappush(heap, (queue.holding / queue.weight, nxt.run_after, i))
    return taken


def _next_fitting(candidates: list[Candidate], start: int, rooms: dict[str, float],
                  blocked: set[str]) -> int | None:
    """The index of the first candidate from `start` on that fits its lane's room, passing
    over the lanes in `blocked`; a lane whose candidate does not fit is added to them."""
    for n in range(start, len(candidates)):
        c = candidates[n]
        if c.lane in blocked:
            continue
        if c.cost <= rooms.get(c.lane, 0.0) + _EPSILON:
            return n
        blocked.add(c.lane)
    return None

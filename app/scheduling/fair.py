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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A waiting job that fits its tenant's and its key's limits; `cost` is what it takes
    of the broker's room (1, or less for a job that shares a message)."""

    id: uuid.UUID
    run_after: datetime
    cost: float = 1.0


@dataclass
class TenantQueue:
    """A tenant's weight, the slots it holds now, and its candidates in its order."""

    tenant_id: uuid.UUID
    weight: float
    holding: float  # slots: an instant job holds a share of one
    candidates: list[Candidate] = field(default_factory=list)


_EPSILON = 1e-9  # shares of a slot are floats: 50 of 1/50 fill a room of 1


def pick(queues: list[TenantQueue], room: float) -> list[uuid.UUID]:
    """The candidates to admit, in fair order, while they fit in the broker's `room`; a
    tenant whose next candidate does not fit takes no more."""
    heap = [(q.holding / q.weight, q.candidates[0].run_after, i)
            for i, q in enumerate(queues) if q.candidates]
    heapq.heapify(heap)
    taken: list[uuid.UUID] = []
    next_of = [0] * len(queues)
    while heap and room > 0:
        _, _, i = heapq.heappop(heap)
        queue, n = queues[i], next_of[i]
        chosen = queue.candidates[n]
        if chosen.cost > room + _EPSILON:
            continue
        taken.append(chosen.id)
        room -= chosen.cost
        queue.holding += chosen.cost
        next_of[i] = n + 1
        if n + 1 < len(queue.candidates):
            nxt = queue.candidates[n + 1]
            heapq.heappush(heap, (queue.holding / queue.weight, nxt.run_after, i))
    return taken

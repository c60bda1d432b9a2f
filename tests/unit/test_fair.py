"""The fair order between tenants (`app/scheduling/fair.py`), a pure function."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.scheduling.fair import IO_LANE, JOBS_LANE, Candidate, TenantQueue, pick

T0 = datetime(2026, 12, 2, tzinfo=UTC)


def queue(weight=1.0, holding=0, n=10, start=0, cost=1.0) -> TenantQueue:
    return TenantQueue(uuid.uuid4(), weight, holding, [
        Candidate(uuid.uuid4(), T0 + timedelta(seconds=start + i), cost) for i in range(n)])


def owner(queues, ids) -> list[int]:
    where = {c.id: i for i, q in enumerate(queues) for c in q.candidates}
    return [where[i] for i in ids]


def test_equal_tenants_alternate_oldest_first():
    a, b = queue(start=0), queue(start=100)
    assert owner([a, b], pick([a, b], 4)) == [0, 1, 0, 1]


def test_a_tenant_holding_many_slots_waits_for_the_one_holding_none():
    busy, idle = queue(holding=5), queue(n=3, start=100)
    assert owner([busy, idle], pick([busy, idle], 4)) == [1, 1, 1, 0]


def test_slots_follow_the_weights():
    heavy, light = queue(weight=3.0, n=20), queue(n=20, start=100)
    taken = owner([heavy, light], pick([heavy, light], 8))
    assert (taken.count(0), taken.count(1)) == (6, 2)


def test_the_room_bounds_what_is_taken_and_cheap_jobs_take_less_of_it():
    assert len(pick([queue(n=20)], 3)) == 3
    # Jobs that share a message (a 50th of one each): a room of 2 holds 100 of them.
    assert len(pick([queue(n=200, cost=0.02)], 2)) == 100


def test_no_candidates_no_picks():
    assert pick([queue(n=0)], 5) == [] and pick([queue()], 0) == []


def test_each_lane_has_its_own_room_and_a_full_one_holds_back_only_its_own_jobs():
    """A tenant's backlog in the prefork lane leaves the io lane's room to io jobs, its own
    and others'; within a lane a tenant's order holds (a job that does not fit stops that
    lane for the tenant)."""
    mixed = TenantQueue(uuid.uuid4(), 1.0, 0.0, [
        Candidate(uuid.uuid4(), T0, 1.0, JOBS_LANE),
        Candidate(uuid.uuid4(), T0 + timedelta(seconds=1), 1.0, JOBS_LANE),
        Candidate(uuid.uuid4(), T0 + timedelta(seconds=2), 1.0, IO_LANE),
        Candidate(uuid.uuid4(), T0 + timedelta(seconds=3), 0.5, JOBS_LANE),
    ])
    other = TenantQueue(uuid.uuid4(), 1.0, 5.0, [Candidate(uuid.uuid4(), T0, 1.0, IO_LANE)])
    taken = pick([mixed, other], {JOBS_LANE: 1.0, IO_LANE: 2.0})
    c = mixed.candidates
    assert taken == [c[0].id, c[2].id, other.candidates[0].id]  # c[3] may not pass c[1]
    assert pick([TenantQueue(uuid.uuid4(), 1.0, 0.0, list(c))], {JOBS_LANE: 0.0, IO_LANE: 1.0}) \
        == [c[2].id]

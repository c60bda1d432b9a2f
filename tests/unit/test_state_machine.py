"""The job state machine and the retry arithmetic, as pure functions."""

from __future__ import annotations

import pytest

from app.jobs import TRANSITIONS, can_transition
from app.models import TERMINAL, JobStatus
from app.runs import backoff_s


def test_every_status_has_a_rule():
    assert set(TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_only_leave_through_an_explicit_retry(terminal):
    allowed = {s for s in JobStatus if can_transition(terminal, s)}
    assert allowed <= {JobStatus.QUEUED}
    assert not can_transition(terminal, JobStatus.PROCESSING)
    assert not can_transition(terminal, JobStatus.COMPLETED)


def test_completed_is_final():
    assert not any(can_transition(JobStatus.COMPLETED, s) for s in JobStatus)


@pytest.mark.parametrize(
    "current,new,ok",
    [
        ("queued", "processing", True),
        ("queued", "cancelled", True),
        ("queued", "completed", False),
        ("processing", "retrying", True),
        ("processing", "queued", True),  # a hold: its service asked it to wait
        ("retrying", "processing", True),
        ("retrying", "completed", False),
        ("failed", "queued", True),
        ("cancelled", "queued", True),
        ("failed", "processing", False),
    ],
)
def test_transitions(current, new, ok):
    assert can_transition(current, new) is ok


def test_backoff_grows_exponentially_within_jitter_and_cap():
    for n, full in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)]:
        values = [backoff_s(n, 2.0, 300.0) for _ in range(200)]
        assert all(full / 2 <= v <= full for v in values)
        assert len(set(values)) > 1  # jittered
    assert all(backoff_s(30, 2.0, 10.0) <= 10.0 for _ in range(50))

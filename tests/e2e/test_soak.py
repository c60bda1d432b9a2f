"""A short soak: jobs over HTTP from several clients while workers are SIGKILLed and replaced.

`python -m bench.soak` runs the same with 10,000 jobs (`make soak`).
"""

from __future__ import annotations

import uuid

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.e2e


def test_nothing_is_lost_or_doubled_while_workers_are_killed(domain):
    report = run_soak(
        domain.with_(worker_lost_redelivery_s=6.0),
        f"soak-{uuid.uuid4().hex[:8]}",
        jobs=400,
        clients=4,
        workers=2,
        kill_every_s=2.5,
    )
    print(report)
    assert report.kills >= 2, report  # the chaos really happened
    # Every job completed: none of these jobs can fail, so a `failed` one is a defect too.
    assert report.by_status == {"completed": 400}, report
    assert report.not_completed == 0 and report.not_terminal == 0 and report.missing_rows == 0
    assert report.completed_twice == 0 and report.seq_gaps == 0
    assert report.events >= 400 * 3  # queued, processing, completed at the least
    assert report.follower_missed == 0 and report.follower_duplicates == 0
    assert report.ok

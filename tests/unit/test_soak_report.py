"""The soak's verdict: every job must have completed, not merely ended."""

from __future__ import annotations

from bench.soak import SoakReport


def test_a_soak_with_a_failed_job_is_not_ok():
    report = SoakReport(jobs=3, by_status={"completed": 2, "failed": 1}, not_completed=1)
    assert not report.ok


def test_a_soak_where_every_job_completed_is_ok():
    assert SoakReport(jobs=3, by_status={"completed": 3}).ok

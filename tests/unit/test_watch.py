"""The process's run watcher (`app/watch.py`): one call for every run, on fake steps."""

from __future__ import annotations

import threading
import time

from app.watch import Watcher


class Steps:
    def __init__(self, fail_first: bool = False):
        self.checks: list[list] = []
        self.renewals: list[list] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def check(self, runs):
        with self.lock:
            self.checks.append(sorted(runs))
            if self.fail_first and len(self.checks) == 1:
                raise RuntimeError("database away")

    def renew(self, runs):
        with self.lock:
            self.renewals.append(sorted(runs))


def wait_for(check, timeout: float = 2.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert check()


def test_every_run_is_checked_in_one_call_and_renewed_less_often():
    steps = Steps()
    watcher = Watcher(steps.check, steps.renew, check_s=lambda: 0.01, renew_s=lambda: 0.1)
    for run in ("a", "b", "c"):
        watcher.add(run)
    wait_for(lambda: len(steps.checks) >= 20)
    assert steps.checks[-1] == ["a", "b", "c"]  # one call for the three, not one each
    assert 1 <= len(steps.renewals) <= len(steps.checks) // 5
    assert steps.renewals[-1] == ["a", "b", "c"]


def test_a_run_discarded_is_no_longer_watched_and_none_watched_means_no_calls():
    steps = Steps()
    watcher = Watcher(steps.check, steps.renew, check_s=lambda: 0.01, renew_s=lambda: 10)
    watcher.add("a")
    watcher.add("b")
    watcher.discard("a")
    wait_for(lambda: steps.checks and steps.checks[-1] == ["b"])
    watcher.discard("b")
    time.sleep(0.05)
    seen = len(steps.checks)
    time.sleep(0.1)
    assert len(steps.checks) == seen  # nothing watched: the thread waits


def test_a_failed_check_is_tried_again():
    steps = Steps(fail_first=True)
    watcher = Watcher(steps.check, steps.renew, check_s=lambda: 0.01, renew_s=lambda: 10)
    watcher.add("a")
    wait_for(lambda: len(steps.checks) >= 3)

"""The Celery tasks in an embedded Celery worker (Celery's test harness), on the real Redis."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker

import celeryconfig
from app import jobs
from tests.support.stack import wait_until


@pytest.fixture
def celery_app_worker(domain):
    """Our Celery app with an embedded worker thread (Celery's own test harness).

    pytest-celery 1.x replaces Celery's `celery_worker` fixture with a Docker-based one,
    which cannot run here, so the harness under that fixture is used directly.
    """
    from workers import make_celery

    app = make_celery(domain)
    app.control.purge()  # nothing end-to-end tests left behind may run here
    with start_worker(app, pool="solo", perform_ping_check=False, queues=("jobs", "sweeps"),
                      shutdown_timeout=30):
        yield app


def test_run_job_task_runs_a_dispatched_job(celery_app_worker, tenant):
    job, _ = jobs.submit(tenant[1], {"kind": "sleep", "params": {"seconds": 0.2, "steps": 2}})
    done = wait_until(
        lambda: (j := jobs.get(tenant[1], job["id"]))["status"] == "completed" and j, 20, 0.05,
        "the job to complete",
    )
    assert done["result"] == {"slept": 0.2} and done["attempts"] == 1
    assert [e["seq"] for e in jobs.job_events(tenant[1], job["id"])["items"]] == [1, 2, 3, 4, 5]


def test_sweep_task_dispatches_a_delayed_job(celery_app_worker, tenant):
    job, _ = jobs.submit(tenant[1], {"kind": "echo", "params": {"late": 1}, "countdown_s": 0.3})
    time.sleep(0.4)
    assert jobs.get(tenant[1], job["id"])["status"] == "queued"  # nobody sent it yet
    celery_app_worker.send_task(celeryconfig.SWEEP_TASK, queue="sweeps")
    done = wait_until(
        lambda: (j := jobs.get(tenant[1], job["id"]))["status"] == "completed" and j, 20, 0.05,
        "the sweep to dispatch the job",
    )
    assert done["result"] == {"late": 1}

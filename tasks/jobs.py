"""The job task: run one dispatch of a job."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from app import runs
from app.outbox.names import RUN_JOB
from tasks import RETRY_WHILE_DATABASE_AWAY


@shared_task(name=RUN_JOB, bind=True, **RETRY_WHILE_DATABASE_AWAY)
def run_job(self, job_id: str, token: str):
    """Run the job `job_id` if `token` is still its current dispatch."""
    return runs.execute(job_id, token, self.request.hostname, (SoftTimeLimitExceeded,))

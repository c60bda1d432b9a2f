"""The job tasks: run one dispatch of a job, or of each job a shared message carries."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from app import runs
from app.outbox.names import RUN_JOB, RUN_JOBS
from tasks import RETRY_WHILE_DATABASE_AWAY, soft_time_limit


@shared_task(name=RUN_JOB, bind=True, **RETRY_WHILE_DATABASE_AWAY)
def run_job(self, job_id: str, token: str):
    """Run the job `job_id` if `token` is still its current dispatch."""
    with soft_time_limit(self.request):
        return runs.execute(job_id, token, self.request.hostname, (SoftTimeLimitExceeded,))


@shared_task(name=RUN_JOBS, bind=True, **RETRY_WHILE_DATABASE_AWAY)
def run_jobs(self, jobs: list):
    """Run each `[job_id, token]` of a message that jobs of an instant generator share."""
    pairs = [(str(job_id), str(token)) for job_id, token in jobs]
    return runs.execute_group(pairs, self.request.hostname, (SoftTimeLimitExceeded,))

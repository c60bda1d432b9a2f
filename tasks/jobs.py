"""The job task: run one dispatch of a job."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from app import dispatch, runs
from app.errors import Unavailable


@shared_task(
    name=dispatch.RUN_JOB,
    bind=True,
    # Postgres away for a moment: try again later; the message itself carries no state.
    autoretry_for=(Unavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=None,
)
def run_job(self, job_id: str, token: str):
    """Run the job `job_id` if `token` is still its current dispatch."""
    return runs.execute(job_id, token, self.request.hostname, (SoftTimeLimitExceeded,))

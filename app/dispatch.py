"""The one seam to Celery: send work by task name, so `app/` never imports Celery or `tasks/`.

The Celery app is injected by the process entry point (`configure(sender)`), where `sender`
has the shape of `Celery.send_task`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app import config

RUN_JOB = "orchestra.jobs.run"
JOBS_QUEUE = "jobs"
RUN_COMMAND = "orchestra.agents.run_command"
AGENTS_QUEUE = "agents"
# After its soft limit (`timeout_s`) a run gets this long to record TIMEOUT before it is killed.
HARD_LIMIT_GRACE_S = 15

Sender = Callable[..., Any]
_sender: Sender | None = None


def configure(sender: Sender) -> None:
    """Install the function that puts a message on the broker."""
    global _sender
    _sender = sender


def send_job(job: dict) -> None:
    """Send one run of `job` (a row with id, dispatch_token, priority, timeout_s) to a worker.

    The job id is the Celery task id, so Flower, logs and rows line up.
    """
    if _sender is None:
        raise RuntimeError("app.dispatch.configure() was not called in this process")
    timeout = float(job["timeout_s"])
    _sender(
        RUN_JOB,
        kwargs={"job_id": str(job["id"]), "token": str(job["dispatch_token"])},
        task_id=str(job["id"]),
        queue=JOBS_QUEUE,
        # Redis sorts lower numbers first; our contract says 9 is most urgent.
        priority=9 - int(job["priority"]),
        soft_time_limit=timeout,
        time_limit=timeout + HARD_LIMIT_GRACE_S,
        headers=log_headers(job),
    )


def log_headers(row: dict) -> dict:
    """What the worker's logs say of a task besides its id: the row's correlation id (and
    agent), carried as message headers so the worker needs no query to log them."""
    headers = {"orchestra_correlation_id": row.get("correlation_id")}
    if row.get("agent_id") is not None:
        headers["orchestra_agent_id"] = str(row["agent_id"])
    return headers


def send_command(command: dict) -> None:
    """Send an agent command (a row with id, agent_id, dispatch_token) to a worker.

    The command id is the Celery task id. Its hard limit leaves the hook its soft limit
    (`AGENT_COMMAND_TIMEOUT_S`) plus a grace to record TIMEOUT.
    """
    if _sender is None:
        raise RuntimeError("app.dispatch.configure() was not called in this process")
    timeout = config.current().agent_command_timeout_s
    _sender(
        RUN_COMMAND,
        kwargs={"command_id": str(command["id"]), "token": str(command["dispatch_token"])},
        task_id=str(command["id"]),
        queue=AGENTS_QUEUE,
        soft_time_limit=timeout,
        time_limit=timeout + HARD_LIMIT_GRACE_S,
        headers=log_headers(command),
    )

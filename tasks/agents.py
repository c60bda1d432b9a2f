"""Agent tasks: run one command from an agent's mailbox; heartbeat the live agents."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

import celeryconfig
from app import dispatch
from app.agents import commands, heartbeats
from app.errors import Unavailable


@shared_task(
    name=dispatch.RUN_COMMAND,
    bind=True,
    # Postgres away for a moment: try again later; the message itself carries no state.
    autoretry_for=(Unavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=None,
)
def run_command(self, command_id: str, token: str):
    """Run the agent command `command_id` if `token` is still its current dispatch."""
    return commands.run(command_id, token, self.request.hostname, (SoftTimeLimitExceeded,))


@shared_task(name=celeryconfig.HEARTBEAT_TASK)
def heartbeat():
    """Run every live agent's health hook; healthy ones get a fresh heartbeat."""
    return heartbeats.heartbeat_all()

"""Agent tasks: run one command from an agent's mailbox; heartbeat the live agents."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

import celeryconfig
from app import dispatch
from app.agents import commands, heartbeats
from tasks import RETRY_WHILE_DATABASE_AWAY


@shared_task(name=dispatch.RUN_COMMAND, bind=True, **RETRY_WHILE_DATABASE_AWAY)
def run_command(self, command_id: str, token: str):
    """Run the agent command `command_id` if `token` is still its current dispatch."""
    return commands.run(command_id, token, self.request.hostname, (SoftTimeLimitExceeded,))


@shared_task(name=celeryconfig.HEARTBEAT_TASK)
def heartbeat():
    """Run every live agent's health hook; healthy ones get a fresh heartbeat."""
    return heartbeats.heartbeat_all()

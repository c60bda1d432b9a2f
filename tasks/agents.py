"""Agent tasks: run one command from an agent's mailbox; heartbeat the live agents."""

from __future__ import annotations

import contextlib

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import LockError

import celeryconfig
from app import config, pubsub
from app.agents import commands, heartbeats
from app.outbox.names import HEARTBEAT, RUN_COMMAND
from tasks import RETRY_WHILE_DATABASE_AWAY


@shared_task(name=RUN_COMMAND, bind=True, **RETRY_WHILE_DATABASE_AWAY)
def run_command(self, command_id: str, token: str):
    """Run the agent command `command_id` if `token` is still its current dispatch."""
    return commands.run(command_id, token, self.request.hostname, (SoftTimeLimitExceeded,))


@shared_task(name=HEARTBEAT)
def heartbeat():
    """Run every live agent's health hook; healthy ones get a fresh heartbeat.

    One pass at a time: the system worker's other slot stays free for the sweep however
    long health hooks (plugin code) take. The lock expires with the pass's hard time limit,
    so a pass killed there does not hold it. Returns None when another pass holds it.
    """
    hard_limit = celeryconfig.heartbeat_limits(config.current())[1]
    lock = pubsub.client().lock(
        f"{pubsub.prefix()}:heartbeat-pass", timeout=hard_limit, blocking=False
    )
    if not lock.acquire():
        return None
    try:
        return heartbeats.heartbeat_all()
    finally:
        with contextlib.suppress(LockError):  # expired meanwhile: nothing left to release
            lock.release()

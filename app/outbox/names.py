"""Every task name and queue, named once: celeryconfig, tasks/, workers/ and the outbox import them.

Tenants' work (`jobs`, `agents`) and the system's own (`sweeps`, `heartbeats`) are consumed by
different workers (the Procfile's `worker` and `system`), so the system's work can never wait
behind a tenant's. The jobs of generators that spend their run waiting on a remote service
(`io_bound`: `http`, `chat`) go to `io`, consumed by the Procfile's `io` worker: a gevent
pool holds hundreds of open streams where a prefork process holds one.
"""

from __future__ import annotations

RUN_JOB = "orchestra.jobs.run"
RUN_JOBS = "orchestra.jobs.run_group"  # the jobs of an instant kind that share one message
RUN_COMMAND = "orchestra.agents.run_command"
SWEEP = "orchestra.sweeps.run"
HEARTBEAT = "orchestra.agents.heartbeat"

JOBS_QUEUE = "jobs"
AGENTS_QUEUE = "agents"
SWEEPS_QUEUE = "sweeps"
HEARTBEATS_QUEUE = "heartbeats"
IO_QUEUE = "io"
TENANT_QUEUES = (JOBS_QUEUE, IO_QUEUE, AGENTS_QUEUE)
SYSTEM_QUEUES = (SWEEPS_QUEUE, HEARTBEATS_QUEUE)

# Which queue carries which task (Celery's `task_routes`).
QUEUE_OF = {
    RUN_JOB: JOBS_QUEUE,
    RUN_JOBS: JOBS_QUEUE,
    RUN_COMMAND: AGENTS_QUEUE,
    SWEEP: SWEEPS_QUEUE,
    HEARTBEAT: HEARTBEATS_QUEUE,
}

# After its soft limit a task (a run's `timeout_s`, a hook's AGENT_COMMAND_TIMEOUT_S) gets this
# long to record TIMEOUT before it is killed; the sweeps wait as long before they step in.
HARD_LIMIT_GRACE_S = 15

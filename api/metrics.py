"""`GET /metrics`: Prometheus text, gathered from Postgres and Redis at scrape time.

Gathered per scrape (not counted in-process) so every api replica reports the same truth
and a restart loses nothing.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, SummaryMetricFamily

from app import config, dispatch, jobs
from app.agents import queries as agent_queries
from app.errors import Unavailable

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a Celery queue on Redis (kombu keeps one list per priority)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    for step in range(1, 10):
        pipe.llen(f"{queue}:{step}")
    return sum(pipe.execute())


class JobsCollector:
    """Job counts, durations, queue depth and outbox backlog."""

    def collect(self):
        try:
            stats = jobs.stats()
        except Unavailable:
            log.warning("metrics: database unavailable")
            return
        counts = GaugeMetricFamily(
            "orchestra_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        for kind, status, n in stats["counts"]:
            counts.add_metric([kind, status], n)
        yield counts
        durations = SummaryMetricFamily(
            "orchestra_job_run_seconds",
            "Run time of the jobs completed in the last hour",
            labels=["kind"],
        )
        for kind, n, total in stats["durations"]:
            durations.add_metric([kind], count_value=n, sum_value=total)
        yield durations
        yield GaugeMetricFamily(
            "orchestra_outbox_unpublished_events",
            "Events committed but not yet published",
            value=stats["unpublished_events"],
        )
        yield GaugeMetricFamily(
            "orchestra_outbox_undispatched_jobs",
            "Waiting jobs not yet on the broker",
            value=stats["undispatched_jobs"],
        )
        yield from self._queue()

    def _queue(self):
        url = config.current().effective_broker_url
        if not url.startswith(("redis://", "rediss://")):
            return
        try:
            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            depths = {
                q: queue_depth(client, q) for q in (dispatch.JOBS_QUEUE, dispatch.AGENTS_QUEUE)
            }
        except redis.RedisError as exc:
            log.warning("metrics: broker unavailable: %s", exc)
            return
        gauge = GaugeMetricFamily("orchestra_queue_depth", "Messages waiting", labels=["queue"])
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


class AgentsCollector:
    """Agents by type and status; commands by command and status."""

    def collect(self):
        try:
            totals = agent_queries.totals()
        except Unavailable:
            log.warning("metrics: database unavailable")
            return
        agents = GaugeMetricFamily(
            "orchestra_agents", "Agents by type and status", labels=["type", "status"]
        )
        for agent_type, status, n in totals["agents"]:
            agents.add_metric([agent_type, status], n)
        yield agents
        commands = GaugeMetricFamily(
            "orchestra_agent_commands",
            "Agent commands by command and status",
            labels=["command", "status"],
        )
        for command, status, n in totals["commands"]:
            commands.add_metric([command, status], n)
        yield commands


_registry = CollectorRegistry()
_registry.register(JobsCollector())
_registry.register(AgentsCollector())


@bp.get("/metrics")
def metrics():
    """Prometheus text exposition."""
    return Response(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)

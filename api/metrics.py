"""`GET /metrics`: Prometheus text, gathered from Postgres and Redis at scrape time.

Gathered per scrape (not counted in-process) so every api replica reports the same truth
and a restart loses nothing: the jobs and commands by status the sweep counted into Redis,
the outbox backlog from Postgres (partial indexes: as costly as the backlog is long), the
queue depths of the broker, and the histograms and counters the workers and publishers
keep in Redis (`app/telemetry.py`). No scrape scans a table that grows with history.
"""

from __future__ import annotations

import logging

import redis
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from api import operations_examples
from api.contract import Blueprint
from app import config, pubsub, telemetry
from app.agents import queries as agent_queries
from app.errors import Unavailable
from app.outbox.names import SYSTEM_QUEUES, TENANT_QUEUES
from app.scheduling import gauges

log = logging.getLogger(__name__)
bp = Blueprint(
    "metrics", __name__, tag="Operations", area=None, examples=operations_examples.operations
)


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a Celery queue on Redis (kombu keeps one list per priority)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    for step in range(1, 10):
        pipe.llen(f"{queue}:{step}")
    return sum(pipe.execute())


class JobsCollector:
    """Job counts (as the sweep last counted them), queue depth and outbox backlog."""

    def collect(self):
        yield from self._counts()
        try:
            stats = telemetry.outbox_backlog()
        except Unavailable:
            log.warning("metrics: database unavailable")
            return
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

    def _counts(self):
        try:
            client = pubsub.client()
            job_counts, age = telemetry.read_counts(client, telemetry.JOB_COUNTS)
            command_counts, _ = telemetry.read_counts(client, telemetry.COMMAND_COUNTS)
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            return
        counts = GaugeMetricFamily(
            "orchestra_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        for kind, status, n in job_counts:
            counts.add_metric([kind, status], n)
        yield counts
        commands = GaugeMetricFamily(
            "orchestra_agent_commands",
            "Agent commands by command and status",
            labels=["command", "status"],
        )
        for command, status, n in command_counts:
            commands.add_metric([command, status], n)
        yield commands
        yield GaugeMetricFamily(
            "orchestra_counts_age_seconds",
            # Counted every METRICS_COUNTS_INTERVAL_S; +Inf until the first count.
            "Seconds since the sweep counted jobs and commands by status",
            value=age,
        )

    def _queue(self):
        url = config.current().effective_broker_url
        if not url.startswith(("redis://", "rediss://")):
            return
        try:
            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            depths = {q: queue_depth(client, q) for q in QUEUES}
        except redis.RedisError as exc:
            log.warning("metrics: broker unavailable: %s", exc)
            return
        gauge = GaugeMetricFamily("orchestra_queue_depth", "Messages waiting", labels=["queue"])
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


QUEUES = (*TENANT_QUEUES, *SYSTEM_QUEUES)

_HISTOGRAMS = {
    "job_run_seconds": "Run time of job attempts (generator start to outcome committed)",
    "job_queue_wait_seconds": "Time a job attempt waited between due and started",
    "chat_time_to_first_token_seconds": "The chat generator's time from its request to the "
    "first token of the reply",
    "chat_tokens_per_second": "The chat generator's completion tokens a second, after the "
    "first",
}


class CountersCollector:
    """The histograms and counters kept in Redis by workers and publishers."""

    def collect(self):
        try:
            client = pubsub.client()
            histograms = {m: telemetry.read_histograms(client, m) for m in _HISTOGRAMS}
            published = telemetry.read_counter(client, telemetry.EVENTS_PUBLISHED)
            tokens = telemetry.read_counter(client, telemetry.CHAT_TOKENS)
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            return
        for metric, doc in _HISTOGRAMS.items():
            family = HistogramMetricFamily(f"orchestra_{metric}", doc, labels=["kind"])
            for kind, (buckets, total) in sorted(histograms[metric].items()):
                family.add_metric([kind], buckets, sum_value=total)
            yield family
        counter = CounterMetricFamily(
            "orchestra_events_published", "Events published on Redis, by type",
            labels=["event_type"],
        )
        for event_type, n in sorted(published.items()):
            counter.add_metric([event_type], n)
        yield counter
        chat = CounterMetricFamily("orchestra_chat_tokens", "Tokens of the chat generator's "
                                   "calls, by type (prompt, completion)", labels=["type"])
        for kind, n in sorted(tokens.items()):
            chat.add_metric([kind], n)
        yield chat


# The scheduler's gauges: (name, help, the Redis metric, the label of the last part).
_SCHEDULER = (
    ("orchestra_scheduler_jobs", "Jobs holding a slot (sent or running), running, or "
     "waiting in Postgres for a slot", gauges.TENANT_SLOTS, "state"),
    ("orchestra_scheduler_waiting_jobs", "Jobs waiting in Postgres for a slot, by why",
     gauges.WAITING_JOBS, "reason"),
    ("orchestra_scheduler_tenant_limit", "A tenant's limit in force (summed: over tenants "
     "with work)", gauges.TENANT_LIMITS, "limit"),
    ("orchestra_scheduler_concurrency_keys", "Concurrency keys with jobs holding or waiting "
     "(busy), and those at their limit (at_limit)", gauges.TENANT_KEYS, "state"),
)


class SchedulerCollector:
    """Slots held, jobs waiting by reason, limits and keys at their limit, as the sweep last
    counted them: per tenant (a `tenant` label) with METRICS_TENANT_LABELS, else summed."""

    def collect(self):
        try:
            client = pubsub.client()
            read = {metric: telemetry.read_counts(client, metric)[0]
                    for _, _, metric, _ in _SCHEDULER}
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            return
        per_tenant = config.current().metrics_tenant_labels
        for name, doc, metric, label in _SCHEDULER:
            family = GaugeMetricFamily(
                name, doc, labels=["tenant", label] if per_tenant else [label])
            summed: dict[str, int] = {}
            for tenant, value, n in read[metric]:
                if per_tenant:
                    family.add_metric([tenant, value], n)
                else:
                    summed[value] = summed.get(value, 0) + n
            for value, n in sorted(summed.items()):
                family.add_metric([value], n)
            yield family


class AgentsCollector:
    """Agents by type and status (the agents table is small: read at each scrape)."""

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


_registry = CollectorRegistry()
_registry.register(JobsCollector())
_registry.register(AgentsCollector())
_registry.register(CountersCollector())
_registry.register(SchedulerCollector())


_TEXT = {
    "description": "text exposition",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}


@bp.get("/metrics")
@bp.doc(responses={"200": _TEXT})
def metrics():
    """Prometheus metrics

    Prometheus text exposition: jobs by kind and status, run durations, queue depth, outbox
    backlog, agents and commands, the scheduler's slots, waiting jobs by reason, limits and
    busy keys. Jobs and commands by status, and the scheduler's gauges, are as the sweep
    last counted them (every `METRICS_COUNTS_INTERVAL_S`; `orchestra_counts_age_seconds`
    says how long ago), so a scrape scans no table. No key needed; no tenant is named
    unless `METRICS_TENANT_LABELS` is on.
    """
    return Response(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)

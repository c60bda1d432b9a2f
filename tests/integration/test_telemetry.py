"""The counters kept in Redis: cumulative histograms and the events-published counter."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from app import pubsub, telemetry
from app.outbox import publish


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_observations_become_a_cumulative_histogram_on_metrics(flask_app, domain):
    kind = f"k{uuid.uuid4().hex[:8]}"  # a label of its own: other tests count other kinds
    for seconds in (0.02, 0.02, 3.0, 7200.0):
        telemetry.observe(kind, job_run_seconds=seconds)
    text = flask_app.test_client().get("/metrics").get_data(as_text=True)
    got = samples(text)

    def bucket(le: str) -> float:
        return got[("orchestra_job_run_seconds_bucket", (("kind", kind), ("le", le)))]

    assert bucket("0.01") == 0 and bucket("0.05") == 2 and bucket("5.0") == 3
    assert bucket("3600.0") == 3 and bucket("+Inf") == 4
    assert got[("orchestra_job_run_seconds_count", (("kind", kind),))] == 4
    assert abs(got[("orchestra_job_run_seconds_sum", (("kind", kind),))] - 7203.04) < 1e-6


def test_publishing_counts_events_by_type(domain):
    event_type = f"test.{uuid.uuid4().hex[:8]}"
    envs = [{"event_type": event_type, "metadata": {"tenant": "nobody"}} for _ in range(3)]
    publish.publish(envs)
    publish.publish(envs[:1])
    counts = telemetry.read_counter(pubsub.client(), telemetry.EVENTS_PUBLISHED)
    assert counts[event_type] == 4

"""Operators' view of real processes: /metrics that move, JSON logs that follow a job."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sio import EventClient
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page: {(name, sorted labels): value}."""
    text = requests.get(url + "/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str) -> float:
    """The sum of a metric over all its label values."""
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_move_after_a_run_with_a_client_connected(stack, client):
    """Histograms, published events, deliveries and job counts all grow with a run."""
    api = stack.url(stack.procs_named("api")[0])
    relay = stack.url(stack.procs_named("relay")[0])
    before_api, before_relay = scrape(api), scrape(relay)
    watcher = EventClient(relay, client.secret)
    try:
        assert watcher.subscribe("tenant") == {"ok": True}
        during = scrape(relay)
        assert value(during, "orchestra_relay_connections") >= 1
        jobs = [client.submit("echo", {"n": i}) for i in range(3)]
        jobs.append(client.submit("sleep", {"seconds": 0.3, "steps": 2}))
        for job in jobs:
            client.wait_status(job["id"], "completed")
        wait_until(lambda: len(watcher.events) >= 4 * 3, 30, 0.1, "the run's events relayed")
        after_relay = scrape(relay)
    finally:
        watcher.close()

    def grew():  # workers count after their commit: give the last one a moment
        after = scrape(api)
        return all(
            value(after, f"orchestra_job_{m}_seconds_count", kind="echo")
            >= value(before_api, f"orchestra_job_{m}_seconds_count", kind="echo") + 3
            for m in ("run", "queue_wait")
        ) and after

    after_api = wait_until(grew, 30, 0.2, "the job histograms to count the run")
    for m in ("run", "queue_wait"):
        name = f"orchestra_job_{m}_seconds"
        assert value(after_api, f"{name}_count", kind="sleep") >= 1
        assert value(after_api, f"{name}_sum", kind="sleep") > value(
            before_api, f"{name}_sum", kind="sleep"
        )
        # Cumulative buckets: +Inf equals the count, and no bucket exceeds the next.
        inf = value(after_api, f"{name}_bucket", kind="echo", le="+Inf")
        assert inf == value(after_api, f"{name}_count", kind="echo")
    run_sum = value(after_api, "orchestra_job_run_seconds_sum", kind="sleep")
    assert run_sum - value(before_api, "orchestra_job_run_seconds_sum", kind="sleep") >= 0.3
    # Jobs by status are counted by the sweep (METRICS_COUNTS_INTERVAL_S): wait for them.
    before_done = value(before_api, "orchestra_jobs", kind="echo", status="completed")
    wait_until(
        lambda: value(scrape(api), "orchestra_jobs", kind="echo", status="completed")
        >= before_done + 3,
        30,
        0.2,
        "the sweep to count the completed jobs",
    )
    published = value(
        after_api, "orchestra_events_published_total", event_type="job.status.updated"
    )
    assert published >= value(
        before_api, "orchestra_events_published_total", event_type="job.status.updated"
    ) + 3 * 4
    for queue in ("jobs", "agents", "sweeps"):
        assert ("orchestra_queue_depth", (("queue", queue),)) in after_api
    assert ("orchestra_outbox_unpublished_events", ()) in after_api
    assert value(after_relay, "orchestra_relay_deliveries_total") >= value(
        before_relay, "orchestra_relay_deliveries_total"
    ) + len(watcher.events)


def test_flower_still_serves_its_own_metrics(stack):
    """Flower's Prometheus endpoint answers beside ours."""
    flower = stack.start("flower", ORCHESTRA_ENV="development")  # no login needed here
    stack.wait_http(flower, "/healthcheck", timeout=60)
    text = wait_until(
        lambda: (r := requests.get(stack.url(flower) + "/metrics", timeout=5)).ok and r.text,
        30, 0.5, "flower's /metrics",
    )
    assert "flower_" in text
    # Flower logs JSON lines too (flowerconfig.py), its start-up lines included.
    assert json_lines(flower), "flower logged nothing"


def json_lines(proc) -> list[dict]:
    """Every line of a process's log, each parsed as one JSON object (a line that is not
    JSON fails the test)."""
    text = proc.log_path.read_text()
    lines = text.splitlines()
    if not text.endswith("\n"):
        lines = lines[:-1]  # a line still being written
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{proc.name}: not a JSON line: {line!r}") from None
        assert isinstance(record, dict), line
        for key in ("ts", "level", "logger", "process", "message"):
            assert key in record, (proc.name, key, line)
        parsed.append(record)
    return parsed


def test_a_correlation_id_follows_a_job_through_json_logs(stack, client):
    """api, worker and relay each log the job with the correlation id its request brought."""
    corr = f"abc-{uuid.uuid4().hex}"
    watcher = EventClient(stack.url(stack.procs_named("relay")[0]), client.secret)
    try:
        assert watcher.subscribe("tenant") == {"ok": True}
        resp = client.post(
            "/api/v1/jobs", {"kind": "echo", "params": {"log": 1}},
            headers={"X-Correlation-ID": corr},
        )
        assert resp.status_code == 202 and resp.headers["X-Correlation-ID"] == corr
        job = resp.json()
        assert job["correlation_id"] == corr
        watcher.wait_for_status(job["id"], "completed")
    finally:
        watcher.close()
    # A request without the header gets a fresh id, echoed back.
    fresh = client.get("/api/v1/jobs").headers["X-Correlation-ID"]
    assert fresh and fresh != corr

    def found(name: str) -> bool:
        return any(
            record.get("correlation_id") == corr and record.get("job_id") == job["id"]
            for proc in stack.procs_named(name)
            for record in json_lines(proc)
        )

    for name in ("api", "worker", "relay"):
        wait_until(lambda n=name: found(n), 15, 0.3, f"{name} to log the job with its id")
    # The access log is JSON too, with the id read back from the response header.
    access = [
        r for proc in stack.procs_named("api") for r in json_lines(proc)
        if r["logger"] == "gunicorn.access" and r.get("correlation_id") == corr
    ]
    assert access and access[0]["method"] == "POST" and access[0]["status"] == "202"
    for proc in stack.procs_named("beat"):
        json_lines(proc)

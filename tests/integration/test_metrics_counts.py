"""`GET /metrics` scans no table that grows with history: jobs and agent commands by status
are counted by the sweep into Redis (at most every METRICS_COUNTS_INTERVAL_S), and a scrape
reads them there, beside the outbox backlog read from partial indexes."""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from app import db, jobs, pubsub, sweeps, telemetry
from app.scheduling import admission


@contextmanager
def statements():
    """The SQL this process sends meanwhile."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _submit(tenant, kind_label: str, n: int) -> None:
    for i in range(n):
        jobs.submit(tenant[1], {"kind": "echo", "params": {"tag": kind_label, "i": i}})
    assert admission.settle()  # their passes ran (statements of this process's own)


def test_a_scrape_reads_no_table_that_grows_with_history(flask_app, tenant):
    _submit(tenant, "scan", 3)
    with statements() as seen:
        resp = flask_app.test_client().get("/metrics")
    assert resp.status_code == 200
    reads = [s for s in seen if s.upper().startswith("SELECT")]
    assert reads, "the scrape reads the outbox backlog from Postgres"
    for sql in reads:
        assert "GROUP BY jobs" not in sql and "agent_commands" not in sql, sql
        if re.search(r"\bFROM jobs\b", sql):
            # Only the waiting, undispatched jobs: the partial index ix_jobs_due.
            assert "jobs.dispatched_at IS NULL" in sql and "jobs.status IN" in sql, sql


def test_the_sweep_counts_jobs_by_status_and_a_scrape_reads_them(flask_app, domain, tenant):
    client = flask_app.test_client()
    pubsub.client().delete(telemetry.key("counts-lock"))
    assert sweeps.run_all(None)["counted"] is True
    swept = samples(client.get("/metrics").get_data(as_text=True))
    assert swept[("orchestra_counts_age_seconds", ())] < 30

    pubsub.client().delete(telemetry.key("counts-lock"))
    assert telemetry.refresh_counts(60.0) is True
    _submit(tenant, "count", 4)
    # Within the interval, another sweep (or another worker's) does not count again.
    assert telemetry.refresh_counts(60.0) is False
    queued = swept.get(("orchestra_jobs", (("kind", "echo"), ("status", "queued"))), 0)
    stale = samples(client.get("/metrics").get_data(as_text=True))
    assert stale[("orchestra_jobs", (("kind", "echo"), ("status", "queued")))] == queued

    assert telemetry.refresh_counts(60.0, force=True) is True
    fresh = samples(client.get("/metrics").get_data(as_text=True))
    assert fresh[("orchestra_jobs", (("kind", "echo"), ("status", "queued")))] == queued + 4
    assert fresh[("orchestra_counts_age_seconds", ())] < 30
    assert ("orchestra_outbox_undispatched_jobs", ()) in fresh


def test_counts_never_refreshed_are_reported_as_infinitely_old(domain):
    from api import create_app
    from app import config

    app = create_app(domain.with_(channel_prefix=f"{domain.channel_prefix}-{uuid.uuid4().hex}"))
    try:
        got = samples(app.test_client().get("/metrics").get_data(as_text=True))
    finally:
        config.install(domain)
        pubsub.init(domain.redis_url, domain.channel_prefix, domain.dependency_timeout_s)
    assert got[("orchestra_counts_age_seconds", ())] == float("inf")
    assert not [k for k in got if k[0] == "orchestra_jobs"]

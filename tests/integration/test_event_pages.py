"""Event replays over HTTP are paged and bounded per call: a subject of thousands of events
is never one answer, and a client walks it with `next_since` until `has_more` is false."""

from __future__ import annotations

from sqlalchemy import func, update

from app import db, events, jobs
from app.agents import core
from app.models import Event
from tests.integration.test_api_errors import assert_envelope

V1 = "/api/v1"
MANY = 2_500


def _fill(subject, n: int) -> None:
    """`n` progress events of one subject, recorded as the services record them."""
    with db.transaction() as conn:
        for i in range(n):
            events.record(
                conn,
                subject,
                events.AGENT_STATUS_CHANGED if subject.type == "agent" else "job.progress.updated",
                _payload(subject, i, n),
                "worker",
            )
        # Not for Redis: left in the outbox, they would hold up the sweeps of other tests.
        conn.execute(
            update(Event).where(Event.subject_id == subject.id).values(published_at=func.now())
        )


def _payload(subject, i: int, n: int) -> dict:
    if subject.type == "agent":
        return {
            "agent_id": str(subject.id),
            "status": "running" if i % 2 else "stopped",
            "previous_status": "stopped" if i % 2 else "running",
            "reason": f"flap {i}",
        }
    return {"job_id": str(subject.id), "progress": i / n, "message": f"step {i}"}


def _walk(client, auth, url: str, limit: int | None) -> tuple[list[int], list[int]]:
    """Every seq, page by page, and the size of each page."""
    seqs, sizes, since = [], [], 0
    while True:
        query = {"since": since, **({"limit": limit} if limit else {})}
        body = client.get(url, query_string=query, headers=auth).json
        assert set(body) == {"items", "next_since", "has_more"}
        seqs += [e["seq"] for e in body["items"]]
        sizes.append(len(body["items"]))
        assert body["next_since"] == (seqs[-1] if seqs else since)
        since = body["next_since"]
        if not body["has_more"]:
            return seqs, sizes


def test_a_jobs_replay_is_paged_and_walks_to_the_end(http, tenant):
    client, auth = http
    job = client.post(f"{V1}/jobs", json={"kind": "echo", "params": {}}, headers=auth).json
    with db.transaction() as conn:
        subject = jobs.subject(jobs.load(conn, job["id"]))
    _fill(subject, MANY)
    url = f"{V1}/jobs/{job['id']}/events"
    first = client.get(url, headers=auth).json
    assert len(first["items"]) == 100 and first["has_more"] is True  # the default page
    assert first["next_since"] == first["items"][-1]["seq"] == 100
    seqs, sizes = _walk(client, auth, url, 1000)
    total = MANY + 1  # and the job's own `queued` event
    assert seqs == list(range(1, total + 1))
    assert sizes == [1000, 1000, total - 2000]
    last = client.get(url, query_string={"since": total}, headers=auth).json
    assert last == {"items": [], "next_since": total, "has_more": False}


def test_an_agents_replay_is_paged_too(http):
    client, auth = http
    agent = client.post(f"{V1}/agents", json={"name": "pages", "type": "echo"}, headers=auth).json
    with db.transaction() as conn:
        subject = core.subject(core.load(conn, agent["id"]))
    _fill(subject, 1_050)
    url = f"{V1}/agents/{agent['id']}/events"
    seqs, sizes = _walk(client, auth, url, None)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 1_050
    assert max(sizes) == 100


def test_over_the_page_limit_is_a_field_error(http):
    client, auth = http
    job = client.post(f"{V1}/jobs", json={"kind": "echo", "params": {}}, headers=auth).json
    for limit in (1001, 0, "x"):
        resp = client.get(
            f"{V1}/jobs/{job['id']}/events", query_string={"limit": limit}, headers=auth
        )
        err = assert_envelope(resp, 422, "VALIDATION_ERROR")
        assert list(err["details"]) == ["limit"]

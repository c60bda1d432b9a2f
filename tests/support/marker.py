""""Nothing else arrived" as a positive signal: a marker event sent after, received after.

A test that asserts a client received nothing more (no duplicate after the terminal event,
nothing of another tenant) cannot wait for an absence. Instead it waits until everything the
watched jobs recorded has left the outbox (`published_at` set: Redis took it, and the sweep
will not send it again), then sends a marker (an `echo` job in a card room of its own) and
waits for the marker's completion on the same connection. The relay forwards Redis' messages
in order on one listener and a Socket.IO connection delivers in order, so anything the relay
would still send for the watched jobs has arrived by then; the caller asserts on what it has.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.support.stack import wait_until


def all_published(job_ids: list[str]) -> bool:
    """Whether every event of these jobs was taken by Redis (none left for the sweep)."""
    from app import db

    with db.transaction() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM events WHERE subject_id = ANY(CAST(:ids AS uuid[])) "
                 "AND published_at IS NULL"),
            {"ids": list(job_ids)},
        ).scalar_one()
    return left == 0


def send_marker(client, watchers, job_ids: list[str], timeout: float = 30) -> str:
    """Return once each watcher received a marker job's completion, sent after every event
    of `job_ids` was published. `client` submits the marker (its tenant's relay channel);
    the marker's id is returned, to leave it out of what the caller counts."""
    wait_until(lambda: all_published(job_ids), timeout, 0.05, "the jobs' events to be published")
    card = f"marker-{uuid.uuid4().hex[:12]}"
    for watcher in watchers:
        assert watcher.subscribe(f"card:{card}") == {"ok": True}
    marker = client.submit("echo", {"marker": card}, card_id=card)
    for watcher in watchers:
        watcher.wait_for_status(marker["id"], "completed", timeout=timeout)
    return marker["id"]

"""The resumable-stream logic (`app/streams/`) with fake seams: no Socket.IO, no Postgres.

`Fakes` stands in for the relay: `send` records what each client got, `spawn` queues the
subscription's worker until the test runs it (so "the listener never waits on a read" and
"live events arrive while a replay reads" are steps the test takes, not timing), and the
stored events are a list the read seams filter as `app.events.for_subject` / `for_tenant` do.
"""

from __future__ import annotations

import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.agents import scopes
from app.streams import CLOCK_MARGIN, Stream, Subscription, subscription
from app.tenants import TenantRef

READER = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:read", "agents:read"}))
JOB = ("job", "j1")


def event(subject: tuple[str, str], seq: int, card_id: str | None = None, **payload) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "job.progress.updated",
        "seq": seq,
        "subject": {"type": subject[0], "id": subject[1]},
        "payload": payload,
        "metadata": {"tenant": "acme", "card_id": card_id},
    }


class Fakes:
    """The relay's seams, in memory."""

    def __init__(self, page: int = 500, backlog: int = 1000) -> None:
        self.stored: list[tuple[datetime, dict]] = []  # (created_at, envelope), oldest first
        self.sent: list[dict] = []
        self.reads: list[tuple] = []
        self.rooms_asked: list[int] = []
        self.dropped: list[str] = []
        self.workers: deque = deque()
        self.on_read = lambda: None  # what "happens meanwhile" during a read
        self.takes_at_most: int | None = None  # a client that stops reading after so many
        self.stream = Stream(
            self.send,
            make_room=self.make_room,
            drop=lambda sub: self.dropped.append(sub.client),
            spawn=lambda fn, *args: self.workers.append((fn, args)),
            read_subject=self.read_subject,
            read_tenant=self.read_tenant,
            page=lambda: page,
            backlog_max=lambda: backlog,
        )

    def store(self, envelope: dict, at: datetime | None = None) -> dict:
        self.stored.append((at or datetime.now(UTC), envelope))
        return envelope

    def send(self, sub: Subscription, envelope: dict) -> bool:
        self.sent.append(envelope)
        return True

    def make_room(self, sub: Subscription, packets: int) -> bool:
        self.rooms_asked.append(packets)
        return self.takes_at_most is None or len(self.sent) < self.takes_at_most

    def read_subject(self, subject, since, until=None, after=None, *, limit) -> list[dict]:
        self.reads.append((subject, since, until, after, limit))
        self.on_read()
        rows = [
            env for at, env in self.stored
            if (env["subject"]["type"], env["subject"]["id"]) == subject
            and env["seq"] > since and (until is None or env["seq"] <= until)
            and (after is None or at > after)
        ]
        return sorted(rows, key=lambda env: env["seq"])[:limit]

    def read_tenant(self, tenant_id, after, card_id) -> list[dict]:
        self.reads.append(("tenant", tenant_id, after, card_id))
        return [
            env for at, env in self.stored
            if at > after and (card_id is None or env["metadata"]["card_id"] == card_id)
        ]

    def run_workers(self) -> None:
        """Run the spawned workers to the end, as the relay's greenlets would."""
        while self.workers:
            fn, args = self.workers.popleft()
            fn(*args)

    def seqs(self, subject=JOB) -> list[int]:
        return [e["seq"] for e in self.sent
                if (e["subject"]["type"], e["subject"]["id"]) == subject]

    def subscribe(self, room: str, subject, since: int = 0, key: TenantRef = READER):
        """What the relay's subscribe does: queue the replay, then let it run."""
        sub = subscription("c1", room, subject, since, key)
        replay = None if subject is None else self.stream.start_replay(sub, subject)
        if replay is not None:
            self.stream.run_replay(sub)
            self.run_workers()
            assert replay.done.is_set() and replay.error is None
        return sub


def test_duplicates_are_dropped_live_and_after_a_replay():
    f = Fakes()
    for seq in (1, 2, 3):
        f.store(event(JOB, seq))
    sub = f.subscribe("job:j1", JOB)
    for seq in (2, 3, 4, 4, 1):  # 2 and 3 were replayed; 4 comes twice
        f.stream.route(sub, event(JOB, seq))
    assert f.seqs() == [1, 2, 3, 4]
    assert not f.workers  # nothing of this needed a read


def test_a_gap_is_filled_in_order_by_the_subscriptions_worker_not_the_listener():
    f = Fakes()
    sub = f.subscribe("job:j1", JOB, since=3)
    f.reads.clear()
    for seq in (4, 5, 6):
        f.store(event(JOB, seq))
    f.stream.route(sub, event(JOB, 6))  # 4 and 5 were lost on the way
    f.stream.route(sub, event(JOB, 7))  # arrives while the fill waits: behind it
    assert f.sent == [] and f.reads == []  # the listener neither read nor sent out of order
    f.store(event(JOB, 7))
    f.run_workers()
    assert f.seqs() == [4, 5, 6, 7]
    assert f.reads == [(JOB, 3, 5, None, 500)]  # only the gap, bounded above by the live event


def test_a_tenant_room_first_seeing_a_subject_past_seq_1_fills_only_since_it_subscribed():
    f = Fakes()
    f.store(event(JOB, 1), at=datetime.now(UTC) - timedelta(minutes=5))  # before the subscribe
    sub = f.subscribe("tenant", None)
    assert sub.tenant_id == READER.id and sub.card_id is None
    f.store(event(JOB, 2))
    f.store(event(JOB, 3))
    f.stream.route(sub, event(JOB, 4))
    f.run_workers()
    assert f.seqs() == [2, 3, 4]
    assert f.reads == [(JOB, 0, 3, sub.started_at, 500)]
    other = ("job", "j2")
    f.stream.route(sub, event(other, 1))  # a new subject at seq 1: sent at once, no read
    assert f.seqs(other) == [1] and not f.workers


def test_a_replay_of_ten_thousand_events_is_paged_while_live_events_arrive():
    f = Fakes(page=500)
    for seq in range(1, 10_001):
        f.store(event(JOB, seq))
    sub = subscription("c1", "job:j1", JOB, 0, READER)
    replay = f.stream.start_replay(sub, JOB)
    live = iter(range(10_001, 10_021))

    def publish_meanwhile():  # each page read, a worker commits and publishes one more event
        seq = next(live, None)
        if seq is not None:
            f.stream.route(sub, f.store(event(JOB, seq)))

    f.on_read = publish_meanwhile
    f.stream.run_replay(sub)
    f.run_workers()
    assert replay.done.is_set() and replay.error is None
    assert f.seqs() == list(range(1, 10_021))  # every event once, in order
    assert all(limit == 500 for *_, limit in f.reads)
    assert 20 <= len(f.reads) <= 22  # pages of 500, never one read of everything
    assert f.rooms_asked == [500] * len(f.reads)  # each page waited for room in the queue
    assert not sub.busy and not sub.inbox


def test_a_replay_stops_when_the_client_has_no_room():
    f = Fakes(page=10)
    for seq in range(1, 101):
        f.store(event(JOB, seq))
    f.takes_at_most = 20  # it stops reading after two pages
    sub = f.subscribe("job:j1", JOB)
    assert f.seqs() == list(range(1, 21)) and sub.last[JOB] == 20


def test_catch_up_after_a_loss_in_a_subjects_room():
    f = Fakes()
    f.store(event(JOB, 1))
    sub = f.subscribe("job:j1", JOB)
    lost_at = datetime.now(UTC)
    for seq in (2, 3, 4):  # published while the listener was away
        f.store(event(JOB, seq))
    f.stream.resume(sub, lost_at)
    f.run_workers()
    assert f.seqs() == [1, 2, 3, 4]
    f.stream.route(sub, event(JOB, 4))  # what Redis still delivers late is a duplicate
    assert f.seqs() == [1, 2, 3, 4]


def test_catch_up_after_a_loss_in_a_tenant_room_finds_subjects_it_never_saw():
    jobs_only = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:read"}))
    f = Fakes()
    sub = f.subscribe("tenant", None, key=jobs_only)
    f.stream.route(sub, event(JOB, 1))
    lost_at = datetime.now(UTC)
    new, agent = ("job", "j2"), ("agent", "a1")
    for env in (event(JOB, 2), event(new, 1), event(agent, 1), event(JOB, 3), event(new, 2)):
        f.store(env, at=lost_at + timedelta(milliseconds=1))
    f.stream.resume(sub, lost_at)
    f.run_workers()
    assert f.reads[0] == ("tenant", jobs_only.id, lost_at - CLOCK_MARGIN, None)
    assert [(e["subject"]["id"], e["seq"]) for e in f.sent] == [
        ("j1", 1), ("j1", 2), ("j2", 1), ("j1", 3), ("j2", 2)]  # never the agent's event


def test_a_card_room_catches_up_on_its_card_only():
    f = Fakes()
    sub = f.subscribe("card:acme:c9", None)
    assert sub.card_id == "c9"
    lost_at = datetime.now(UTC)
    f.store(event(JOB, 1, card_id="c9"), at=lost_at + timedelta(milliseconds=1))
    f.store(event(("job", "j2"), 1, card_id="other"), at=lost_at + timedelta(milliseconds=1))
    f.stream.resume(sub, lost_at)
    f.run_workers()
    assert [(e["subject"]["id"], e["seq"]) for e in f.sent] == [("j1", 1)]


def test_events_go_to_the_rooms_subscriptions_whose_key_may_read_them():
    f = Fakes()
    jobs_only = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:read"}))
    tenant_sub = subscription("c1", "tenant:acme", None, 0, jobs_only)
    agent_sub = subscription("c2", "agent:a1", ("agent", "a1"), 0, READER)
    rooms = {"tenant:acme": [tenant_sub], "agent:a1": [agent_sub]}
    agent_event = event(("agent", "a1"), 1)
    to = f.stream.fan_out(agent_event, ["tenant:acme", "agent:a1"], lambda r: rooms.get(r, []))
    assert to == 1
    assert f.sent == [agent_event]  # the jobs-only key's tenant room did not get it


def test_one_failing_subscription_does_not_stop_the_others():
    f = Fakes()
    broken = subscription("c1", "tenant:acme", None, 0, READER)
    broken.lock = None  # any failure inside route
    fine = subscription("c2", "tenant:acme", None, 0, READER)
    env = event(JOB, 1)
    assert f.stream.fan_out(env, ["tenant:acme"], lambda r: [broken, fine]) == 2
    assert f.sent == [env]


def test_a_key_without_jobs_read_gets_an_executions_job_result_withheld():
    agents_only = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"agents:read"}))
    f = Fakes()
    agent = ("agent", "a1")
    sub = f.subscribe("agent:a1", agent, key=agents_only)
    f.stream.route(sub, event(agent, 1, job_id="j1", result={"job_id": "j1", "result": 42}))
    assert f.sent[0]["payload"]["result"] == {"job_id": "j1", "withheld": scopes.WITHHELD}


def test_a_client_that_owes_too_much_work_is_dropped():
    f = Fakes(backlog=3)
    sub = f.subscribe("job:j1", JOB)
    for seq in (5, 6, 7, 8):  # each waits behind the first gap fill
        f.stream.route(sub, event(JOB, seq))
    assert sub.closed and f.dropped == ["c1"] and len(sub.inbox) == 3
    f.run_workers()
    assert f.sent == [] and not sub.inbox  # a closed subscription sends nothing more


def test_a_closed_subscription_leaves_no_subscribe_waiting():
    f = Fakes()
    sub = subscription("c1", "job:j1", JOB, 0, READER)
    replay = f.stream.start_replay(sub, JOB)
    sub.closed = True  # the client left before its worker ran
    f.stream.run_replay(sub)
    f.run_workers()
    assert replay.done.is_set() and f.reads == []


def test_a_closed_subscriptions_leftover_work_reads_nothing():
    f = Fakes()
    sub = f.subscribe("tenant", None)
    f.stream.route(sub, event(JOB, 5))  # a gap to fill
    f.stream.resume(sub, datetime.now(UTC))  # and a catch-up, both queued
    sub.closed = True  # the client left before its worker ran
    f.run_workers()
    assert f.reads == [] and f.sent == [] and not sub.inbox and not sub.busy


def test_an_unavailable_database_fails_the_subscribes_replay():
    from app.errors import Unavailable

    f = Fakes()

    def down():
        raise Unavailable("the database is away")

    f.on_read = down
    sub = subscription("c1", "job:j1", JOB, 0, READER)
    replay = f.stream.start_replay(sub, JOB)
    f.stream.run_replay(sub)
    f.run_workers()
    assert replay.done.is_set() and isinstance(replay.error, Unavailable)


def test_the_stream_logic_loads_no_transport():
    """`app/streams/` is the domain: importing it brings no Socket.IO, Flask, gevent or Celery."""
    import subprocess
    import sys

    code = (
        "import sys, app.streams; print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'flask', 'flask_socketio', 'socketio', 'engineio', 'gevent', 'celery', 'api'}))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"

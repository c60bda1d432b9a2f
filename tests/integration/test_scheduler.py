"""The scheduler against the real Postgres and broker: who gets a slot, and why a job waits.

Jobs are submitted as the API does (each submit asks for an admission pass after commit);
what was admitted is read from the rows (`admitted_at`) and what was sent from the broker.
No worker runs here: a job "starts" by the claim a worker makes and "ends" by a transition,
so each test sets exactly the slots it means to. The broker's room (SCHEDULER_AHEAD) is
shared by every tenant, so each test starts from a database with nothing waiting.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
import redis
from sqlalchemy import delete, select, update

from app import config, db, jobs, tenants
from app.models import Job, JobStatus, Pause
from app.outbox import broker, unit_of_work
from app.runs import end_attempt
from app.scheduling import admission, limits, pauses, reasons
from tests.integration.test_jobs_batch import celery  # noqa: F401 - the API's broker seam

AHEAD = 8


@pytest.fixture(autouse=True)
def scheduler(domain):
    """Nothing waits or holds a slot (jobs other tests left are ended), and the broker's room
    is AHEAD; the settings are put back after."""
    with db.transaction() as conn:
        conn.execute(
            update(Job)
            .where(Job.status.in_(("queued", "retrying", "processing")))
            .values(status="cancelled", finished_at=datetime.now(UTC))
        )
    settings = config.current()
    config.install(settings.with_(scheduler_ahead=AHEAD))
    yield
    config.install(settings)


def new_tenant(**own) -> tenants.TenantRef:
    name = f"s-{uuid.uuid4().hex[:10]}"
    secret = tenants.create_key(name)
    if own:
        limits.set_tenant_limits(name, own)
    return tenants.authenticate(secret)


def submit(tenant, n=1, kind="sleep", **req) -> list[uuid.UUID]:
    params = {"seconds": 1} if kind == "sleep" else {}
    return [jobs.submit(tenant, {"kind": kind, "params": params, **req})[0].id for _ in range(n)]


def admitted(ids) -> list[uuid.UUID]:
    """Those of `ids` holding a slot, in the order they were made (once the passes this
    process asked for have run)."""
    assert admission.settle()
    with db.transaction() as conn:
        rows = conn.execute(
            select(Job.id).where(Job.id.in_(list(ids)), Job.admitted_at.isnot(None))
            .order_by(Job.created_at, Job.id)
        ).scalars()
        return list(rows)


def start(job_id) -> None:
    """Claim the job as its worker would (once admitted and sent): it no longer waits on
    the broker."""
    assert admission.settle()
    with db.transaction() as conn:
        token = conn.execute(select(Job.dispatch_token).where(Job.id == job_id)).scalar_one()
    with unit_of_work("worker") as uow:
        assert jobs.claim(uow, job_id, str(token), "w@test") is not None


def end(job_id) -> None:
    """The job ends (cancelled: terminal, as any end); its slot is free."""
    with unit_of_work("worker") as uow:
        job = jobs.load(uow.conn, job_id, lock=True)
        jobs.transition(uow, job, JobStatus.CANCELLED, run_id=None)


def reason(tenant, job_id) -> dict | None:
    assert admission.settle()
    return reasons.job_and_reason(tenant, job_id)[1]


def test_a_tenant_holds_no_more_slots_than_its_limit_and_the_next_waits_for_one():
    t = new_tenant(max_running=3)
    ids = submit(t, 6)
    assert admitted(ids) == ids[:3]
    assert reason(t, ids[3]) == {"code": "tenant_limit", "running": 3, "limit": 3,
                                 "message": "the tenant runs 3 of 3 slots"}
    assert reason(t, ids[0])["code"] == "dispatched"
    start(ids[0])
    end(ids[0])  # its slot is free: the pass after the end admits the next, in order
    assert admitted(ids) == ids[:4]


def test_only_admitted_jobs_reach_the_broker(celery):  # noqa: F811
    t = new_tenant(max_running=2)
    ids = submit(t, 5)
    assert admission.settle()
    held = broker.held_row_ids(redis.Redis.from_url(config.current().redis_url), ["jobs"])
    assert {str(i) for i in ids} & held == {str(i) for i in ids[:2]}


def test_an_instant_job_takes_a_share_of_a_slot():
    # DISPATCH_GROUP_MAX instant jobs share a message and one transaction: one worker slot.
    t = new_tenant(max_running=1)
    ids = submit(t, config.current().dispatch_group_max + 3, kind="echo")
    assert admitted(ids) == ids[: config.current().dispatch_group_max]
    assert reason(t, ids[-1])["code"] == "tenant_limit"


def test_a_job_that_would_take_the_tenant_past_its_limit_waits_for_it():
    t = new_tenant(max_running=1)
    quick = submit(t, kind="echo")  # a share of the one slot
    slow = submit(t)
    assert admitted(quick + slow) == quick
    assert reason(t, slow[0])["code"] == "tenant_limit"
    start(quick[0])
    end(quick[0])
    assert admitted(slow) == slow


def test_a_job_made_while_nothing_waits_is_admitted_by_its_own_transaction(monkeypatch):
    monkeypatch.setattr(jobs, "admit_soon", lambda: None)  # no pass runs here
    t = new_tenant(max_running=1)
    first, second = submit(t), submit(t)
    assert admitted(first + second) == first  # the second would pass the tenant's limit
    third = submit(new_tenant())
    assert admitted(third) == []  # a job waits: the next slot is the fair order's, a pass's
    with db.transaction() as conn:
        row = conn.execute(select(Job.admitted_at, Job.created_at).where(Job.id == first[0])).one()
    assert row.admitted_at == row.created_at


def test_another_tenants_next_job_goes_before_a_backlog_as_soon_as_a_slot_frees():
    a, b = new_tenant(), new_tenant()
    backlog = submit(a, 30)
    assert admitted(backlog) == backlog[:AHEAD]  # the broker's room is full
    mine = submit(b, 2)
    assert admitted(mine) == []
    assert reason(b, mine[0])["code"] == "fair_share"
    start(backlog[0])  # one slot of room on the broker
    jobs.admit()
    assert admitted(mine) == mine[:1]  # b holds none: its job goes first, not a's ninth
    assert admitted(backlog) == backlog[:AHEAD]


CHAT = {"kind": "chat", "params": {"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                   "messages": [{"role": "user", "content": "hi"}]}}


def test_a_backlog_of_prefork_jobs_leaves_the_io_lane_its_own_room():
    """The io worker's jobs (`chat`, `http`) have a broker room of their own: a backlog of
    another pool's jobs that fills the jobs lane holds none of them back."""
    a, b = new_tenant(), new_tenant()
    filled = submit(a, AHEAD)  # made while nothing waits: each admitted as it is made
    assert admitted(filled) == filled  # the jobs lane's room is full, nothing waits
    alone = jobs.submit(b, CHAT)[0].id  # admitted in its own transaction: its lane has room
    backlog = submit(a, 5)
    chats = [jobs.submit(t, CHAT)[0].id for t in (a, b, b)]
    assert admitted(backlog) == []
    assert admitted([alone, *chats]) == [alone, *chats]
    with db.transaction() as conn:
        made = conn.execute(select(Job.admitted_at, Job.created_at).where(Job.id == alone)).one()
    assert made.admitted_at == made.created_at
    more = [jobs.submit(b, CHAT)[0].id for _ in range(AHEAD)]
    assert len(admitted(more)) == AHEAD - 4  # the io lane is full in its turn
    assert reason(b, more[-1])["code"] == "fair_share"


def test_slots_are_shared_in_proportion_to_the_tenants_weights():
    heavy, light = new_tenant(weight=3.0), new_tenant()
    pauses.pause(None, "sleep")  # both backlogs wait; then one pass shares the room
    try:
        h, lt = submit(heavy, 20), submit(light, 20)
        assert admitted(h + lt) == []
    finally:
        pauses.resume(None, "sleep")
    assert (len(admitted(h)), len(admitted(lt))) == (6, 2)


def test_within_a_tenant_priority_goes_first_then_age():
    t = new_tenant(max_running=1)
    first = submit(t)[0]  # takes the one slot
    low, high, high_later = submit(t, priority=1) + submit(t, priority=8) + submit(t, priority=8)
    end(first)
    assert admitted([low, high, high_later]) == [high]


def test_a_concurrency_key_holds_its_jobs_to_its_limit_and_its_override():
    t = new_tenant(key_limit=2)
    u1 = submit(t, 5, concurrency_key="user-1")
    u2 = submit(t, 2, concurrency_key="user-2")
    free = submit(t, 1)
    assert admitted(u1) == u1[:2] and admitted(u2) == u2 and admitted(free) == free
    assert reason(t, u1[2]) == {"code": "key_limit", "key": "user-1", "running": 2,
                                "limit": 2, "message": "key user-1 at 2 of 2"}
    view = limits.set_key_limit(t, "user-1", 4)
    assert view["max_running"] == 4 and view["own"] is True
    assert admitted(u1) == u1[:4]  # the pass the change asked for admitted two more
    assert limits.key_limit(t, "user-1")["running"] == 4
    assert limits.clear_key_limit(t, "user-1")["max_running"] == 2


def test_keys_of_one_tenant_do_not_block_each_other_behind_a_full_key():
    t = new_tenant(key_limit=1)
    crowded = submit(t, 50, concurrency_key="busy-user")
    other = submit(t, 1, concurrency_key="quiet-user")
    assert admitted(crowded) == crowded[:1] and admitted(other) == other


def test_a_pass_reads_on_past_a_head_that_a_full_key_holds_back():
    # A pass first reads as many of the tenant's jobs as it could start (its running limit);
    # all of those are of one full key here, so it must read further to find the next one.
    t = new_tenant(key_limit=1, max_running=5)
    crowded = submit(t, 12, concurrency_key="busy-user")
    behind = submit(t, 2)
    assert admitted(crowded) == crowded[:1] and admitted(behind) == behind


def test_a_paused_kind_stays_queued_and_resumes_in_order():
    t = new_tenant()
    assert pauses.pause(t.id, "sleep") is True
    assert pauses.pause(t.id, "sleep") is False
    held = submit(t, 3)
    echoed = submit(t, 1, kind="echo")
    assert admitted(held) == [] and admitted(echoed) == echoed
    assert reason(t, held[0])["code"] == "paused"
    other = new_tenant()
    assert admitted(submit(other, 1)) != []  # one tenant's pause is its own
    assert pauses.resume(t.id, "sleep") is True
    assert admitted(held) == held


def test_the_operator_pauses_a_kind_for_every_tenant_and_a_tenant_entirely():
    a, b = new_tenant(), new_tenant()
    pauses.pause(None, "sleep")
    pauses.pause(b.id, None)
    try:
        ja, jb = submit(a, 1), submit(b, 1, kind="echo")
        assert admitted(ja + jb) == []
        assert [p["kind"] for p in pauses.paused(a.id)] == ["sleep"]
    finally:
        pauses.resume(None, "sleep")
        pauses.resume(b.id, None)
    assert admitted(ja + jb) == ja + jb


def test_a_retry_frees_its_slot_and_waits_for_another_when_due():
    t = new_tenant(max_running=1)
    first, second = submit(t, 2)
    start(first)
    with unit_of_work("worker") as uow:
        job = jobs.load(uow.conn, first, lock=True)
        assert end_attempt(uow, job, "BUSY", "try later", transient=True).status == "retrying"
    assert admitted([first, second]) == [second]
    assert reason(t, first)["code"] == "due_at"


def test_a_priority_over_the_tenants_limit_is_refused_and_the_default_held_to_it(flask_app):
    name = f"p-{uuid.uuid4().hex[:8]}"
    secret = tenants.create_key(name)
    limits.set_tenant_limits(name, {"max_priority": 4})
    client, auth = flask_app.test_client(), {"Authorization": f"Bearer {secret}"}
    resp = client.post("/api/v1/jobs", json={"kind": "echo", "priority": 5}, headers=auth)
    assert resp.status_code == 422
    assert resp.json["error"]["details"] == {"priority": ["must be at most 4 for this tenant"]}
    assert client.get("/api/v1/jobs", headers=auth).json["items"] == []
    made = client.post("/api/v1/jobs", json={"kind": "echo"}, headers=auth).json
    assert made["priority"] == 4


def test_the_tenants_limits_are_the_defaults_until_the_operator_sets_its_own():
    name = f"l-{uuid.uuid4().hex[:8]}"
    tenants.create_key(name)
    s = config.current()
    assert limits.tenant_limits(name).public() == {
        "weight": s.tenant_weight, "max_running": s.tenant_max_running,
        "max_priority": s.tenant_max_priority, "key_limit": s.concurrency_key_limit, "own": []}
    mine = limits.set_tenant_limits(name, {"weight": 2.5, "max_running": 7})
    assert (mine.weight, mine.max_running, sorted(mine.own)) == (2.5, 7, ["max_running",
                                                                        "weight"])
    back = limits.set_tenant_limits(name, {}, reset=("weight",))
    assert back.weight == s.tenant_weight and back.own == {"max_running"}


def test_concurrent_passes_never_admit_over_a_limit_nor_a_job_twice():
    t = new_tenant(max_running=5)
    pauses.pause(t.id, None)
    ids = submit(t, 40)
    assert admission.settle()  # the passes the submits asked for ran (and admitted nothing)
    with db.transaction() as conn:  # lift the pause without a pass: six dispatchers race
        conn.execute(delete(Pause).where(Pause.tenant_id == t.id))
    counts: list[int] = []
    barrier = threading.Barrier(6)

    def dispatcher():
        barrier.wait()
        counts.append(jobs.admit())

    threads = [threading.Thread(target=dispatcher) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(counts) == 5 and admitted(ids) == ids[:5]


def test_a_pass_killed_midway_admits_nothing_and_the_next_pass_does():
    t = new_tenant()
    pauses.pause(t.id, None)
    ids = submit(t, 3)
    url = db.engine().url.set(drivername="postgresql").render_as_string(hide_password=False)
    holder = psycopg.connect(url)
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (admission.LOCK_KEY,))
    try:
        assert pauses.resume(t.id, None) is True  # its pass finds the lock taken
        assert jobs.admit() == 0 and admitted(ids) == []
    finally:
        holder.close()  # the holder dies mid-pass: Postgres lets its lock go
    assert jobs.admit() == 3 and admitted(ids) == ids


def test_metrics_show_slots_waiting_reasons_limits_and_busy_keys(flask_app):
    from prometheus_client.parser import text_string_to_metric_families

    from app import pubsub, telemetry
    from app.scheduling import gauges

    a, b, c = new_tenant(max_running=5, key_limit=1), new_tenant(), new_tenant()
    keyed = submit(a, 2, concurrency_key="card-1")
    free = submit(a)
    start(free[0])
    pauses.pause(b.id, "sleep")
    submit(b)
    submit(c, countdown_s=3600)
    assert admission.settle()
    pubsub.client().delete(telemetry.key("counts-lock"))
    assert telemetry.refresh_counts(60.0, force=True, more=gauges.counts)

    def scrape(per_tenant: bool) -> dict:
        config.install(config.current().with_(metrics_tenant_labels=per_tenant))
        text = flask_app.test_client().get("/metrics").get_data(as_text=True)
        return {(s.name, s.labels.pop("tenant", None), *s.labels.values()): s.value
                for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("orchestra_scheduler")}

    mine = scrape(True)
    assert mine[("orchestra_scheduler_jobs", a.name, "holding")] == 2
    assert mine[("orchestra_scheduler_jobs", a.name, "running")] == 1
    assert mine[("orchestra_scheduler_jobs", a.name, "waiting")] == 1
    assert mine[("orchestra_scheduler_waiting_jobs", a.name, "key_limit")] == 1
    assert mine[("orchestra_scheduler_waiting_jobs", b.name, "paused")] == 1
    assert mine[("orchestra_scheduler_waiting_jobs", c.name, "due_at")] == 1
    assert mine[("orchestra_scheduler_tenant_limit", a.name, "max_running")] == 5
    assert mine[("orchestra_scheduler_concurrency_keys", a.name, "busy")] == 1
    assert mine[("orchestra_scheduler_concurrency_keys", a.name, "at_limit")] == 1
    assert admitted(keyed) == keyed[:1]

    summed = scrape(False)  # /metrics takes no key: by default no tenant's name is in it
    assert {tenant for _, tenant, _ in summed} == {None}
    assert summed[("orchestra_scheduler_waiting_jobs", None, "key_limit")] == 1
    assert summed[("orchestra_scheduler_waiting_jobs", None, "paused")] == 1
    assert summed[("orchestra_scheduler_jobs", None, "holding")] == 2

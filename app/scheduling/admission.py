"""The admission pass: give free slots to waiting jobs, fairly, within every limit.

A job holds a slot from its admission (`admitted_at`) until it ends, or until it waits again
for a retry or a hold; only admitted jobs go to the broker (`app/outbox/send.py`). A pass:

1. counts the slots each tenant holds, and the admitted jobs not yet started (the broker's
   backlog, at most SCHEDULER_AHEAD: how far one tenant's jobs can be ahead of another's);
2. reads, per tenant with room, the head of its waiting jobs that are due and not paused, in
   its order (priority, then age): as many as it could start, keeping those its key's room
   allows; where keys held some back, it reads on, up to SCHEDULER_LOOKAHEAD jobs;
3. picks among them in fair order (`fair.pick`), admits them and sends them after commit.

Passes never overlap: each holds a transaction-scoped advisory lock, so any number of
processes (API, workers, beat) may ask for one and no limit is exceeded or job sent twice.
A caller that finds the lock taken does not wait: it drew a ticket first, and the pass that
holds the lock runs again after its commit if a ticket was drawn after its own (its reads
may have missed that caller's job). A caller that sees no job waiting stops there. A pass
killed midway rolls back: nothing was admitted.
The beat runs one every sweep besides, for jobs that became due and anything missed.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from datetime import UTC, datetime

from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from app import config, db, generators
from app.models import Job, Tenant
from app.outbox import unit_of_work
from app.outbox.send import Sendable
from app.rows import JobRow
from app.scheduling.fair import IO_LANE, JOBS_LANE, Candidate, TenantQueue, pick

log = logging.getLogger(__name__)

# The advisory lock of the admission pass ('admit' in ASCII), and how many passes one
# caller runs in a row while tickets keep coming (then the others' own passes or the
# beat's take over).
LOCK_KEY = 0x61646D6974
MAX_ROUNDS = 20

_JOB = Job.__table__
WAITING = "status IN ('queued','retrying')"
HOLDING = "admitted_at IS NOT NULL AND status IN ('queued','retrying','processing')"
# The slots a tenant's holding jobs take: an instant job (`echo`) takes 1/DISPATCH_GROUP_MAX
# of one (that many share a message and run in one transaction, one worker slot).
HOLDING_COST = ("count(*) FILTER (WHERE NOT kind = ANY(:instant)) + count(*) FILTER "
                "(WHERE kind = ANY(:instant)) / CAST(:group AS numeric)")

# Whether any job waits for admission: one probe of ix_jobs_unadmitted, in one round trip
# (autocommit). Most callers, a job's end with nothing behind it, stop there.
_ANY_WAITING = text(f"SELECT EXISTS (SELECT 1 FROM jobs WHERE admitted_at IS NULL AND {WAITING})")
_TICKET_AND_LOCK = text(
    "SELECT nextval('admission_tickets') AS ticket, pg_try_advisory_xact_lock(:key) AS locked"
).bindparams(key=LOCK_KEY)
_LAST_TICKET = text("SELECT last_value FROM admission_tickets")

# The broker's room (`budget`: SCHEDULER_AHEAD less the admitted jobs not started, a shared
# message of instant jobs counting as one), and per tenant with waiting jobs and room those
# it may start now, in its order. Tenants with waiting jobs are found by a loose scan of
# ix_jobs_unadmitted (one index probe each), not by reading every waiting job.
_CANDIDATES = text(f"""
WITH RECURSIVE waiting(tenant_id) AS (
    (SELECT tenant_id FROM jobs WHERE admitted_at IS NULL AND {WAITING}
     ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant_id FROM jobs j
            WHERE j.admitted_at IS NULL AND j.{WAITING} AND j.tenant_id > w.tenant_id
            ORDER BY j.tenant_id LIMIT 1)
    FROM waiting w WHERE w.tenant_id IS NOT NULL
),
held AS (
    SELECT tenant_id, {HOLDING_COST} AS n,
           count(*) FILTER (WHERE status <> 'processing' AND NOT kind = ANY(:instant)
                            AND NOT kind = ANY(:io)) AS ahead,
           count(*) FILTER (WHERE status <> 'processing' AND kind = ANY(:instant)) AS instant,
           count(*) FILTER (WHERE status <> 'processing' AND kind = ANY(:io)) AS ahead_io
    FROM jobs WHERE {HOLDING} GROUP BY tenant_id
),
lanes AS (
    SELECT (:ahead - coalesce(sum(ahead), 0)
            - ceil(coalesce(sum(instant), 0) / CAST(:group AS numeric)))::int AS jobs,
           (:ahead - coalesce(sum(ahead_io), 0))::int AS io
    FROM held
),
-- The rows worth reading: the room of both lanes (each lane's own is `fair.pick`'s).
budget AS (SELECT greatest(jobs, 0) + greatest(io, 0) AS n, jobs, io FROM lanes),
room AS (
    SELECT t.id AS tenant_id,
           coalesce(t.weight, :weight) AS weight,
           coalesce(h.n, 0) AS holding,
           coalesce(t.max_running, :max_running) - coalesce(h.n, 0) AS room,
           coalesce(t.key_limit, :key_limit) AS key_limit
    FROM waiting w JOIN tenants t ON t.id = w.tenant_id
    LEFT JOIN held h ON h.tenant_id = t.id
    WHERE NOT EXISTS (SELECT 1 FROM pauses p WHERE p.tenant_id = t.id AND p.kind IS NULL)
      AND (:everyone OR t.id = ANY(:only)) AND (SELECT n FROM budget) > 0
),
looked AS (
    SELECT r.tenant_id, r.weight, r.holding, r.room, r.key_limit,
           j.id, j.kind, j.concurrency_key, j.priority, j.run_after
    FROM room r CROSS JOIN LATERAL (
        SELECT id, kind, concurrency_key, priority, run_after FROM jobs
        WHERE jobs.tenant_id = r.tenant_id AND admitted_at IS NULL AND {WAITING}
          AND run_after <= :now
          AND NOT EXISTS (SELECT 1 FROM pauses p WHERE p.kind = jobs.kind
                          AND (p.tenant_id IS NULL OR p.tenant_id = jobs.tenant_id))
        ORDER BY priority DESC, run_after, id
        LIMIT CASE WHEN :short THEN least(:lookahead, ceil(r.room)::int, (SELECT n FROM budget))
              ELSE :deep END
    ) j
    WHERE r.room > 0
),
keys_held AS (
    SELECT tenant_id, concurrency_key, count(*) AS n FROM jobs
    WHERE {HOLDING} AND concurrency_key IS NOT NULL
      AND tenant_id IN (SELECT tenant_id FROM room WHERE room > 0)
    GROUP BY tenant_id, concurrency_key
),
keyed AS (
    SELECT l.*, row_number() OVER (PARTITION BY l.tenant_id, l.concurrency_key
                                   ORDER BY l.priority DESC, l.run_after, l.id) AS nth_of_key,
           CASE WHEN l.kind = ANY(:instant) THEN 1 / CAST(:group AS numeric) ELSE 1 END
               AS cost
    FROM looked l
),
fits AS (
    SELECT k.*, row_number() OVER w AS nth, sum(k.cost) OVER w AS spent
    FROM keyed k
    LEFT JOIN keys_held kh
        ON kh.tenant_id = k.tenant_id AND kh.concurrency_key = k.concurrency_key
    LEFT JOIN concurrency_limits cl
        ON cl.tenant_id = k.tenant_id AND cl.concurrency_key = k.concurrency_key
    WHERE k.concurrency_key IS NULL
       OR k.nth_of_key <= coalesce(cl.max_running, k.key_limit) - coalesce(kh.n, 0)
    WINDOW w AS (PARTITION BY k.tenant_id ORDER BY k.priority DESC, k.run_after, k.id)
),
-- Per tenant: jobs looked at, jobs it could start, and how many of them fit their keys.
summary AS (
    SELECT l.tenant_id, count(*) AS looked,
           min(least(ceil(l.room)::int, (SELECT n FROM budget))) AS wanted,
           min(least(l.room, (SELECT n FROM budget))) AS room,
           (SELECT count(*) FROM fits f WHERE f.tenant_id = l.tenant_id) AS fitting,
           (SELECT coalesce(sum(cost), 0) FROM fits f WHERE f.tenant_id = l.tenant_id)
               AS fitting_cost
    FROM looked l GROUP BY l.tenant_id
)
-- What fits the tenant's room and the broker's (costs are exact numerics: 50 shares of 1/50
-- fill a slot); rows past it are not sent back.
SELECT tenant_id, weight, holding, id, kind, run_after, nth,
       NULL AS looked, NULL AS wanted, NULL AS room, NULL AS fitting, NULL AS fitting_cost,
       (SELECT jobs FROM budget) AS budget, (SELECT io FROM budget) AS budget_io
FROM fits WHERE spent <= least(room, (SELECT n FROM budget))
UNION ALL
SELECT tenant_id, NULL, NULL, NULL, NULL, NULL, NULL, looked, wanted, room, fitting,
       fitting_cost, (SELECT jobs FROM budget), (SELECT io FROM budget)
FROM summary
ORDER BY tenant_id, nth
""").bindparams(
    bindparam("only", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("instant", type_=ARRAY(Job.kind.type)),
    bindparam("io", type_=ARRAY(Job.kind.type)),
    bindparam("now", type_=Job.run_after.type),
)

_ADMIT = (
    update(_JOB)
    .where(
        Job.id.in_(bindparam("ids", expanding=True)),
        Job.admitted_at.is_(None),
        Job.status.in_(("queued", "retrying")),
        Tenant.id == Job.tenant_id,
    )
    .values(admitted_at=bindparam("now", type_=Job.admitted_at.type))
    .returning(_JOB, Tenant.name.label("tenant"))
)


_SLOTS_TAKEN = text(f"SELECT {HOLDING_COST} FROM jobs WHERE tenant_id = :tenant AND {HOLDING}"
                    ).bindparams(bindparam("instant", type_=ARRAY(Job.kind.type)))


def slots_taken(conn, tenant_id) -> float:
    """The slots the tenant's holding jobs take (instant ones a share of one each)."""
    group = config.current().dispatch_group_max
    return float(conn.execute(_SLOTS_TAKEN, {"tenant": tenant_id, "instant": instant_kinds(),
                                             "group": group}).scalar_one())


_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)").bindparams(key=LOCK_KEY)
# Whether a job of `kind` for `tenant` may be admitted as it is made, read under the lock:
# no other job waits for a slot (nobody to be fair to), no pause holds it, and it fits its
# tenant's running limit and the broker's room.
_ALONE = text(f"""
SELECT NOT EXISTS (SELECT 1 FROM jobs WHERE admitted_at IS NULL AND {WAITING}
                   AND run_after <= now()) AS alone,
       NOT EXISTS (SELECT 1 FROM pauses p WHERE (p.tenant_id IS NULL OR p.tenant_id = :tenant)
                   AND (p.kind IS NULL OR p.kind = :kind)) AS unpaused,
       (SELECT {HOLDING_COST} FROM jobs WHERE tenant_id = :tenant AND {HOLDING}) AS taken,
       (SELECT coalesce(max_running, :max_running) FROM tenants WHERE id = :tenant) AS most,
       (SELECT CASE WHEN :kind = ANY(:io)
                    THEN count(*) FILTER (WHERE status <> 'processing' AND kind = ANY(:io))
                    ELSE count(*) FILTER (WHERE status <> 'processing'
                                          AND NOT kind = ANY(:instant) AND NOT kind = ANY(:io))
                         + ceil(count(*) FILTER (WHERE status <> 'processing'
                                                 AND kind = ANY(:instant))
                                / CAST(:group AS numeric)) END
        FROM jobs WHERE {HOLDING}) AS ahead
""").bindparams(bindparam("instant", type_=ARRAY(Job.kind.type)),
                bindparam("io", type_=ARRAY(Job.kind.type)))


def admits_at_once(conn, tenant_id, kind: str, settings: config.Settings) -> bool:
    """Whether a new job (no concurrency key, due now) may be admitted in the transaction
    that makes it, which then holds the pass's lock: the pass it would otherwise ask for is
    saved when nothing else waits. False when another pass holds the lock or anything waits:
    the job waits for a pass as any other."""
    if not conn.execute(_TRY_LOCK).scalar_one():
        return False
    instant = instant_kinds()
    r = conn.execute(_ALONE, {"tenant": tenant_id, "kind": kind, "instant": instant,
                              "io": io_kinds(), "max_running": settings.tenant_max_running,
                              "group": settings.dispatch_group_max}).one()
    fits = float(r.taken) + cost_of(kind) <= r.most + 1e-9
    room = r.ahead + (1 if kind not in instant else 0) <= settings.scheduler_ahead
    return bool(r.alone and r.unpaused and fits and room)


def cost_of(kind: str) -> float:
    """The share of a slot a job of `kind` takes (HOLDING_COST's rule for one job)."""
    return 1.0 / config.current().dispatch_group_max if kind in instant_kinds() else 1.0


def instant_kinds() -> list[str]:
    return [name for name, g in generators.all_generators().items()
            if getattr(g, "instant", False)]


def io_kinds() -> list[str]:
    """The kinds of the io lane (`io_bound` generators: the gevent worker's queue)."""
    return [name for name, g in generators.all_generators().items()
            if getattr(g, "io_bound", False)]


def choose(conn, now: datetime, settings: config.Settings) -> list:
    """The ids of the jobs to admit now, in fair order (the caller holds the lock)."""
    instant = instant_kinds()
    group = settings.dispatch_group_max
    params = {
        "ahead": settings.scheduler_ahead,
        "group": group,
        "weight": settings.tenant_weight,
        "max_running": settings.tenant_max_running,
        "key_limit": settings.concurrency_key_limit,
        "lookahead": settings.scheduler_lookahead,
        "instant": instant,
        "io": io_kinds(),
        "now": now,
    }
    rows = conn.execute(_CANDIDATES, {**params, "short": True, "everyone": True, "only": [],
                                      "deep": 0})
    queues, again, keyed, rooms = _queues(rows, instant, params["io"], group)
    if again:
        # Tenants whose head had jobs over their key's limit: read on, up to the lookahead.
        # As far as the lookahead where keys held jobs back, else as many instant jobs as
        # the room takes.
        instants = max(rooms[JOBS_LANE], 0) * group + max(rooms[IO_LANE], 0)
        deep = settings.scheduler_lookahead if keyed else instants
        rows = conn.execute(_CANDIDATES, {**params, "short": False, "everyone": False,
                                          "only": again, "deep": deep})
        queues.update(_queues(rows, instant, params["io"], group)[0])
    return pick(list(queues.values()), rooms)


def _queues(rows, instant: list[str], io: list[str], group: int
            ) -> tuple[dict, list, bool, dict[str, int]]:
    """From `_CANDIDATES`: `(queues by tenant, tenants to read further, whether keys held
    any back, the broker's room by lane)`. Each tenant's head is read first: as many jobs as
    it could start if each took a whole slot. A tenant whose head was all read is read
    further when keys held some of it back, or when it took less than the room (instant
    jobs take a share of a slot)."""
    queues: dict = {}
    again, keyed = [], False
    rooms = {JOBS_LANE: 0, IO_LANE: 0}
    instant_cost = 1.0 / group
    for r in rows:
        rooms = {JOBS_LANE: r.budget, IO_LANE: r.budget_io}
        if r.id is None:  # a tenant's summary
            held_back = r.fitting < r.looked
            if r.looked >= r.wanted and (held_back or r.fitting_cost < r.room):
                again.append(r.tenant_id)
                keyed = keyed or held_back
            continue
        queue = queues.get(r.tenant_id)
        if queue is None:
            queue = queues[r.tenant_id] = TenantQueue(r.tenant_id, float(r.weight),
                                                      float(r.holding))
        cost = instant_cost if r.kind in instant else 1.0
        lane = IO_LANE if r.kind in io else JOBS_LANE
        queue.candidates.append(Candidate(r.id, r.run_after, cost, lane))
    return queues, again, keyed, rooms


def _pass(sendable: Sendable) -> tuple[int, int | None]:
    """One pass, if no other holds the lock: `(admitted, ticket)` (ticket None: not run)."""
    now = datetime.now(UTC)
    with unit_of_work("scheduler") as uow:
        ticket, locked = uow.conn.execute(_TICKET_AND_LOCK).one()
        if not locked:
            return 0, None
        ids = choose(uow.conn, now, config.current())
        if not ids:
            return 0, ticket
        made = {row["id"]: row for row in uow.conn.execute(_ADMIT, {"ids": ids, "now": now})
                .mappings()}
        for job_id in ids:  # sent in the fair order
            if job_id in made:
                uow.send_after_commit(sendable, JobRow.of(made[job_id]))
    return len(made), ticket


def admit(sendable: Sendable) -> int:
    """Run admission passes until no ticket was drawn after the last one's (or another
    process holds the lock); how many jobs were admitted."""
    if not db.read_scalar(_ANY_WAITING):
        return 0  # a job made after this read asks for a pass of its own
    admitted = 0
    for _ in range(MAX_ROUNDS):
        count, ticket = _pass(sendable)
        admitted += count
        if ticket is None:
            break
        if db.read_scalar(_LAST_TICKET) <= ticket:
            break
    return admitted


class _Admitter:
    """This process's passes asked for after a commit (`request`), run on a thread of its
    own: the request that made or freed a slot (an API submit, a worker's job end) does
    not wait for the pass, and requests that come while a pass runs are one more pass, not
    one each. A pass still wanted when the process exits is run at exit; one lost with a
    killed process is the beat's next sweep's. Hand-written, as the outbox's marks: no
    library coalesces work for a thread of a prefork child.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._wanted: Sendable | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def request(self, sendable: Sendable) -> None:
        with self._cond:
            self._wanted = sendable
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                # After a fork the parent's thread does not exist here: one per process.
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="admission")
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None)
                sendable, self._wanted, self._running = self._wanted, None, True
            try:
                admit(sendable)
            except Exception:  # noqa: BLE001 - the thread must live; the beat passes too
                log.exception("admission pass failed; the beat's sweep passes again")
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def settle(self, timeout_s: float = 30.0) -> bool:
        """Wait until no pass of this process is wanted or running; whether it settled."""
        with self._cond:
            if self._pid != os.getpid():
                return True
            return self._cond.wait_for(lambda: self._wanted is None and not self._running,
                                       timeout_s)


_admitter = _Admitter()
request = _admitter.request
settle = _admitter.settle
atexit.register(settle, 5.0)

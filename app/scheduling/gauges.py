"""What the scheduler holds and holds back, counted for `/metrics` (the sweep counts, every
METRICS_COUNTS_INTERVAL_S, into Redis: `app/telemetry.py`).

Per tenant with work: the slots it holds (sent or running), the jobs running, its running
limit, its waiting jobs by reason (the same reasons in the same order as `waiting_reason`
in `reasons.py` gives one job, here counted in one statement), and how many of its
concurrency keys are busy and how many at their limit. Keys are counted, never named: a key
may name a user, and a tenant that names a key per user would grow the metrics unbounded.

Each count reads the jobs that hold or wait (partial indexes), never the finished history.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from app import config
from app.models import Job
from app.scheduling import admission
from app.scheduling.reasons import PROVIDER_LIMITED

# The metrics in Redis, each `{"<tenant>|<label>": n}`.
TENANT_SLOTS = "tenant_slots"  # tenant|holding, running, waiting
TENANT_LIMITS = "tenant_limits"  # tenant|max_running
WAITING_JOBS = "waiting_jobs"  # tenant|reason
TENANT_KEYS = "tenant_keys"  # tenant|busy (keys with jobs holding or waiting), at_limit

_WAIT = "status IN ('queued','retrying')"
_HOLDING = "admitted_at IS NOT NULL AND status IN ('queued','retrying','processing')"

_TENANTS = text(f"""
WITH live AS (
    SELECT tenant_id, count(*) FILTER (WHERE {_HOLDING}) AS holding,
           count(*) FILTER (WHERE status = 'processing') AS running,
           count(*) FILTER (WHERE admitted_at IS NULL) AS waiting
    FROM jobs WHERE ({_HOLDING}) OR (admitted_at IS NULL AND {_WAIT})
    GROUP BY tenant_id
)
SELECT t.name, l.holding, l.running, l.waiting,
       coalesce(t.max_running, :max_running) AS max_running
FROM live l JOIN tenants t ON t.id = l.tenant_id
""")

_WAITING = text(f"""
WITH held AS (
    SELECT tenant_id, {admission.HOLDING_COST} AS n FROM jobs WHERE {_HOLDING}
    GROUP BY tenant_id
),
key_held AS (
    SELECT tenant_id, concurrency_key, count(*) AS n FROM jobs
    WHERE {_HOLDING} AND concurrency_key IS NOT NULL GROUP BY tenant_id, concurrency_key
)
SELECT t.name, CASE
    WHEN j.run_after > now() AND j.error->>'code' = :provider_limited THEN 'provider_limited'
    WHEN j.run_after > now() THEN 'due_at'
    WHEN EXISTS (SELECT 1 FROM pauses p
                 WHERE (p.tenant_id IS NULL OR p.tenant_id = j.tenant_id)
                   AND (p.kind IS NULL OR p.kind = j.kind)) THEN 'paused'
    WHEN coalesce(h.n, 0) + CASE WHEN j.kind = ANY(:instant) THEN 1 / CAST(:group AS numeric)
         ELSE 1 END > coalesce(t.max_running, :max_running) THEN 'tenant_limit'
    WHEN j.concurrency_key IS NOT NULL AND coalesce(kh.n, 0)
         >= coalesce(cl.max_running, t.key_limit, :key_limit) THEN 'key_limit'
    ELSE 'fair_share' END AS reason, count(*) AS n
FROM jobs j JOIN tenants t ON t.id = j.tenant_id
LEFT JOIN held h ON h.tenant_id = j.tenant_id
LEFT JOIN key_held kh ON kh.tenant_id = j.tenant_id AND kh.concurrency_key = j.concurrency_key
LEFT JOIN concurrency_limits cl
    ON cl.tenant_id = j.tenant_id AND cl.concurrency_key = j.concurrency_key
WHERE j.admitted_at IS NULL AND j.{_WAIT}
GROUP BY 1, 2
""").bindparams(bindparam("instant", type_=ARRAY(Job.kind.type)))

_KEYS = text(f"""
WITH k AS (
    SELECT tenant_id, concurrency_key, count(*) FILTER (WHERE admitted_at IS NOT NULL) AS n
    FROM jobs WHERE concurrency_key IS NOT NULL
      AND (({_HOLDING}) OR (admitted_at IS NULL AND {_WAIT}))
    GROUP BY tenant_id, concurrency_key
)
SELECT t.name, count(*) AS busy,
       count(*) FILTER (WHERE k.n >= coalesce(cl.max_running, t.key_limit, :key_limit))
           AS at_limit
FROM k JOIN tenants t ON t.id = k.tenant_id
LEFT JOIN concurrency_limits cl
    ON cl.tenant_id = k.tenant_id AND cl.concurrency_key = k.concurrency_key
GROUP BY t.name
""")


def counts(conn) -> dict[str, dict[str, int]]:
    """`{metric: {"<label>|<label>...": n}}` of the scheduler's gauges, read now."""
    settings = config.current()
    defaults = {"max_running": settings.tenant_max_running,
                "key_limit": settings.concurrency_key_limit}
    slots, limits = {}, {}
    for r in conn.execute(_TENANTS, defaults):
        slots |= {f"{r.name}|holding": r.holding, f"{r.name}|running": r.running,
                  f"{r.name}|waiting": r.waiting}
        limits[f"{r.name}|max_running"] = r.max_running
    waiting = {f"{r.name}|{r.reason}": r.n for r in conn.execute(
        _WAITING, {**defaults, "provider_limited": PROVIDER_LIMITED,
                   "instant": admission.instant_kinds(), "group": settings.dispatch_group_max})}
    keys = {}
    for r in conn.execute(_KEYS, defaults):
        keys |= {f"{r.name}|busy": r.busy, f"{r.name}|at_limit": r.at_limit}
    return {TENANT_SLOTS: slots, TENANT_LIMITS: limits, WAITING_JOBS: waiting,
            TENANT_KEYS: keys}

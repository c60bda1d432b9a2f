"""Scheduling routes: a tenant's limits, its concurrency keys' limits, and pauses; thin
adapters over `app.scheduling`. Changing a key's limit or a pause takes the admin scope."""

from __future__ import annotations

from api import scheduling_examples
from api.auth import current_tenant, requires, requires_admin
from api.contract import Blueprint
from api.schemas import (
    KeyLimitListSchema,
    KeyLimitQuerySchema,
    KeyLimitSchema,
    KeyLimitSetSchema,
    NoBodySchema,
    PauseListSchema,
    PauseRequestSchema,
    PauseStateSchema,
    SchedulingSchema,
)
from app.scheduling import limits, pauses

bp = Blueprint("scheduling", __name__, tag="Jobs", area="jobs",
               examples=scheduling_examples.scheduling)
bp.before_request(requires("jobs"))


@bp.get("/scheduling")
@bp.response(200, SchedulingSchema, description="limits, slots and pauses")
def overview():
    """This tenant's share of the workers

    The limits in force for this tenant (`own` names those set for it; the others are the
    deployment's defaults), how many of its jobs hold a slot (sent or running) and how many
    wait in Postgres for one, and the pauses holding its work back.
    """
    return limits.overview(current_tenant())


@bp.get("/pauses")
@bp.response(200, PauseListSchema, description="{items}")
def list_pauses():
    """Pauses in force

    The pauses that hold this tenant's jobs back: its own, and a kind paused for every tenant
    by the operator. Paused jobs stay `queued` with `waiting_reason` `paused`.
    """
    return {"items": pauses.paused(current_tenant().id)}


def _pause_state(kind: str | None, paused: bool, changed: bool) -> dict:
    return {"tenant": current_tenant().name, "kind": kind, "paused": paused, "changed": changed}


@bp.post("/pauses")
@bp.arguments(PauseRequestSchema, location="optional_json", required=False)
@bp.response(200, PauseStateSchema, description="paused")
def pause(req: dict):
    """Pause this tenant's work (admin)

    Its jobs of `kind` (or all its jobs) stay `queued` in Postgres until resumed; jobs that
    were sent or are running go on. Takes the admin scope.
    """
    requires_admin()
    kind = req.get("kind")
    return _pause_state(kind, True, pauses.pause(current_tenant().id, kind))


@bp.post("/pauses/resume")
@bp.arguments(PauseRequestSchema, location="optional_json", required=False)
@bp.response(200, PauseStateSchema, description="resumed")
def resume(req: dict):
    """Resume this tenant's work (admin)

    Lifts the pause of `kind` (or of all its work): the jobs it held are admitted in the usual
    fair order. A kind the operator paused for every tenant stays paused. Takes the admin
    scope.
    """
    requires_admin()
    kind = req.get("kind")
    return _pause_state(kind, False, pauses.resume(current_tenant().id, kind))


@bp.get("/concurrency-keys")
@bp.arguments(KeyLimitQuerySchema, location="query")
@bp.response(200, KeyLimitListSchema, description="a page, by key")
def list_key_limits(q: dict):
    """Concurrency keys with a limit of their own

    This tenant's keys whose limit was set (`PUT /concurrency-keys/{key}`), by key, each with
    the slots its jobs hold; `next_after` continues the list.
    """
    items = limits.key_limits(current_tenant(), q["limit"], q.get("after"))
    last = items[-1]["key"] if len(items) == q["limit"] else None
    return {"items": items, "next_after": last}


@bp.get("/concurrency-keys/<key>")
@bp.refuses(422)
@bp.response(200, KeyLimitSchema, description="the key's limit")
def get_key_limit(key: str):
    """A concurrency key's limit

    At most `max_running` of this tenant's jobs with this `concurrency_key` hold a slot at
    once: the key's own limit, or the tenant's default (`own` false). An agent's jobs carry
    the key `agent:<agent id>`.
    """
    return limits.key_limit(current_tenant(), key)


@bp.put("/concurrency-keys/<key>")
@bp.refuses(422)
@bp.arguments(KeyLimitSetSchema)
@bp.response(200, KeyLimitSchema, description="the key's limit, set")
def set_key_limit(req: dict, key: str):
    """Set a concurrency key's limit (admin)

    From the scheduler's next pass at most `max_running` jobs with this key hold a slot (0
    holds them all back); jobs holding one keep it. Takes the admin scope.
    """
    requires_admin()
    return limits.set_key_limit(current_tenant(), key, req["max_running"])


@bp.delete("/concurrency-keys/<key>")
@bp.refuses(422)
@bp.arguments(NoBodySchema, location="optional_json", required=False)
@bp.response(200, KeyLimitSchema, description="the key, back on the default")
def clear_key_limit(_: dict, key: str):
    """Put a concurrency key back on the default (admin)

    The key's own limit is removed: the tenant's default applies again. Takes the admin scope.
    """
    requires_admin()
    return limits.clear_key_limit(current_tenant(), key)

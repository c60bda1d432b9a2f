"""The event envelope and its catalogue: recorded in the caller's transaction; published after
commit by the outbox (`app/outbox/publish.py`)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects.postgresql import insert

from app import db, logs
from app.models import AgentStatus, CommandName, CommandStatus, Event, EventCounter, JobStatus

ENVELOPE_VERSION = "1.0"
JOB_STATUS_UPDATED = "job.status.updated"
JOB_PROGRESS_UPDATED = "job.progress.updated"
JOB_OUTPUT_APPENDED = "job.output.appended"
AGENT_CREATE_COMPLETED = "agent.create.completed"
AGENT_UPDATE_COMPLETED = "agent.update.completed"
AGENT_DELETE_COMPLETED = "agent.delete.completed"
AGENT_STATUS_CHANGED = "agent.status.changed"
AGENT_COMMAND_UPDATED = "agent.command.updated"
EXECUTION_STARTED = "agent.capability.execution.started"
EXECUTION_COMPLETED = "agent.capability.execution.completed"
EXECUTION_FAILED = "agent.capability.execution.failed"
CIRCUIT_BREAKER_STATE_CHANGED = "circuit_breaker.state.changed"

_STATUS = {"enum": [s.value for s in JobStatus]}
_ERROR = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    "required": ["code", "message"],
}
_UUID = {"type": "string", "format": "uuid"}
_AGENT_STATUS = {"enum": [s.value for s in AgentStatus]}
_COMMAND_STATUS = {"enum": [s.value for s in CommandStatus]}
_EXECUTION = {
    "command_id": _UUID,
    "agent_id": _UUID,
    "capability": {"type": "string"},
    "job_id": {"anyOf": [_UUID, {"type": "null"}]},
}
_EXECUTION_KEYS = ["command_id", "agent_id", "capability", "job_id"]
_BREAKER_STATE = {"enum": ["closed", "open", "half_open"]}


def _object(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required}


# The JSON Schema of each event type's payload (served at /api/v1/event-types).
EVENT_TYPES: dict[str, dict] = {
    JOB_STATUS_UPDATED: {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": _STATUS,
            "previous_status": {"anyOf": [_STATUS, {"type": "null"}]},
            "attempt": {"type": "integer", "minimum": 0},
            "result": {},
            "result_url": {"type": ["string", "null"]},
            "error": _ERROR,
            # A run held by its service (back to `queued`): when it is due again.
            "run_after": {"type": "string", "format": "date-time"},
        },
        "required": ["job_id", "status", "previous_status", "attempt"],
    },
    JOB_PROGRESS_UPDATED: {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "message": {"type": "string"},
        },
        "required": ["job_id", "progress"],
    },
    # A chunk of a run's streamed output (`app/output.py`): `text` starts at `offset`
    # (characters) of the attempt's output, `deltas` at `delta_offset` of its deltas.
    JOB_OUTPUT_APPENDED: _object(
        {
            "job_id": _UUID,
            "attempt": {"type": "integer", "minimum": 1},
            "offset": {"type": "integer", "minimum": 0},
            "text": {"type": "string"},
            "delta_offset": {"type": "integer", "minimum": 0},
            "deltas": {"type": "array"},
        },
        ["job_id", "attempt", "offset", "text"],
    ),
    AGENT_CREATE_COMPLETED: _object(
        {
            "agent_id": _UUID,
            "name": {"type": "string"},
            "type": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
        },
        ["agent_id", "name", "type", "version"],
    ),
    AGENT_UPDATE_COMPLETED: _object(
        {
            "agent_id": _UUID,
            "version": {"type": "integer", "minimum": 1},
            "reason": {"enum": ["patch", "revert"]},
            "reverted_to": {"type": "integer", "minimum": 1},
        },
        ["agent_id", "version", "reason"],
    ),
    AGENT_DELETE_COMPLETED: _object({"agent_id": _UUID}, ["agent_id"]),
    AGENT_STATUS_CHANGED: _object(
        {
            "agent_id": _UUID,
            "status": _AGENT_STATUS,
            "previous_status": {"anyOf": [_AGENT_STATUS, {"type": "null"}]},
            "reason": {"type": "string"},
            "error": _ERROR,
        },
        ["agent_id", "status", "previous_status"],
    ),
    AGENT_COMMAND_UPDATED: _object(
        {
            "command_id": _UUID,
            "agent_id": _UUID,
            "command": {"enum": [c.value for c in CommandName]},
            "status": _COMMAND_STATUS,
            "previous_status": {"anyOf": [_COMMAND_STATUS, {"type": "null"}]},
            "job_id": {"anyOf": [_UUID, {"type": "null"}]},
            "result": {},
            "error": _ERROR,
        },
        ["command_id", "agent_id", "command", "status", "previous_status"],
    ),
    EXECUTION_STARTED: _object(_EXECUTION, _EXECUTION_KEYS),
    EXECUTION_COMPLETED: _object({**_EXECUTION, "result": {}}, [*_EXECUTION_KEYS, "result"]),
    EXECUTION_FAILED: _object({**_EXECUTION, "error": _ERROR}, [*_EXECUTION_KEYS, "error"]),
    # Recorded on the job whose call changed the breaker's state (the seed's payload + job_id).
    CIRCUIT_BREAKER_STATE_CHANGED: _object(
        {
            "service_name": {"type": "string"},
            "previous_state": _BREAKER_STATE,
            "current_state": _BREAKER_STATE,
            "failure_count": {"type": "integer", "minimum": 0},
            "job_id": _UUID,
        },
        ["service_name", "previous_state", "current_state", "failure_count", "job_id"],
    ),
}


# Compiled once; `format` is asserted too (ids must be UUIDs), which JSON Schema leaves off.
_VALIDATORS = {
    event_type: Draft202012Validator(
        schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    for event_type, schema in EVENT_TYPES.items()
}
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# The same schemas compiled to Python by fastjsonschema: ~2 us a payload against ~40 us for
# jsonschema's validator, and every state change checks one. It says only yes or no; a no
# is explained (and judged) by jsonschema, so both agree on what is refused and why.
_FAST = {
    event_type: fastjsonschema.compile(schema, formats={"uuid": _UUID_PATTERN})
    for event_type, schema in EVENT_TYPES.items()
}


class InvalidEvent(Exception):
    """An event whose type is not in the catalogue or whose payload breaks its schema: a bug
    of ours, so the transaction that would record it rolls back."""


def check(event_type: str, payload: dict) -> None:
    """Raise `InvalidEvent` unless `payload` is valid for `event_type`'s schema."""
    fast = _FAST.get(event_type)
    if fast is None:
        raise InvalidEvent(f"{event_type!r} is not in the event catalogue")
    try:
        fast(payload)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    validator = _VALIDATORS[event_type]
    if not validator.is_valid(payload):
        error = best_match(validator.iter_errors(payload))
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        raise InvalidEvent(f"{event_type} {where}: {error.message}")


@dataclass(frozen=True)
class Subject:
    """Whom an event is about, and the context every envelope of it carries."""

    type: str
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str
    correlation_id: str | None = None
    card_id: str | None = None


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, milliseconds."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@functools.cache
def _field_names(row_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(row_type))


def plain(row) -> dict:
    """A row (a dataclass of `app/rows.py`) in JSON's terms: ids as strings, times as `iso`,
    enums as their values. Which of its fields a client sees is the API's business: each
    route dumps its answer through the schema its document shows (api/schemas.py), so no list
    of public fields is kept here as a second copy.

    Field by field, not `dataclasses.asdict`, which deep-copies every value (params, results):
    the API's answers go through here. The names are read once per row type.
    """
    out = {}
    for name in _field_names(type(row)):
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out[name] = value
    return out


def _record_statement():
    """Take the subject's next `seq` and insert the event: one statement, one round trip.

    Built once: constructing a statement costs more CPU than running it, and events are
    the hot path. The counter upsert locks its row until commit, so concurrent writers of
    one subject queue here and `seq` is gapless and ordered by commit.
    """
    c = EventCounter.__table__.c
    subject_type = bindparam("subject_type", type_=c.subject_type.type)
    subject_id = bindparam("subject_id", type_=c.subject_id.type)
    counter = (
        insert(EventCounter)
        .values(subject_type=subject_type, subject_id=subject_id, last_seq=1)
        .on_conflict_do_update(
            index_elements=[EventCounter.subject_type, EventCounter.subject_id],
            set_={"last_seq": EventCounter.last_seq + 1},
        )
        .returning(EventCounter.last_seq)
        .cte("counter")
    )
    t = Event.__table__.c
    values = select(
        bindparam("id", type_=t.id.type),
        bindparam("tenant_id", type_=t.tenant_id.type),
        subject_type,
        subject_id,
        counter.c.last_seq,
        bindparam("event_type"),
        bindparam("source_service"),
        bindparam("payload", type_=t.payload.type),
        bindparam("metadata", type_=t.metadata.type),
        bindparam("created_at", type_=t.created_at.type),
    )
    columns = "id tenant_id subject_type subject_id seq event_type source_service payload"
    return (
        insert(Event)
        .from_select([*columns.split(), t.metadata, "created_at"], values)
        .returning(Event.seq)
    )


_RECORD = _record_statement()


def _row(subject: Subject, event_type: str, payload: dict, source: str, now: datetime,
         correlation_id: str | None) -> dict:
    """The `events` row of one checked event (its `seq` set by the caller's statement)."""
    return {
        "id": uuid.uuid4(),
        "tenant_id": subject.tenant_id,
        "subject_type": subject.type,
        "subject_id": subject.id,
        "event_type": event_type,
        "source_service": source,
        "payload": payload,
        "metadata": {
            "tenant": subject.tenant,
            # An agent has no correlation id of its own: its events carry the one of the
            # request or task that caused them (bound in the log context by the adapter).
            "correlation_id": subject.correlation_id or correlation_id,
            "card_id": subject.card_id,
            "version": ENVELOPE_VERSION,
        },
        "created_at": now,
    }


def record(conn: Connection, subject: Subject, event_type: str, payload: dict, source: str) -> dict:
    """Check one event against the catalogue, store it in the caller's transaction and
    return its envelope."""
    check(event_type, payload)
    row = _row(subject, event_type, payload, source, datetime.now(UTC),
               logs.current("correlation_id"))
    row["seq"] = conn.execute(_RECORD, row).scalar_one()
    return envelope(row)


def _bump_counters(bumps: list[dict]):
    """Move each subject's counter on by its number of new events (`last_seq` given as that
    number); the counter's new last `seq` comes back."""
    given = db.insert_rows(EventCounter.__table__, bumps)
    return given.on_conflict_do_update(
        index_elements=[EventCounter.subject_type, EventCounter.subject_id],
        set_={"last_seq": EventCounter.last_seq + given.excluded.last_seq},
    ).returning(EventCounter.subject_type, EventCounter.subject_id, EventCounter.last_seq)


def record_first(
    conn: Connection, firsts: list[tuple[Subject, dict]], event_type: str, source: str
) -> list[dict]:
    """Record the first event (`seq` 1) of each of many new subjects, in two statements
    (their counters, then their events: each one multi-row INSERT); their envelopes.

    For subjects made in the caller's transaction (a batch of jobs): none has a counter
    yet, so every `seq` is 1 without `record`'s per-event upsert; a subject that had one
    breaks the counters' primary key and rolls the transaction back, never a second seq 1.
    """
    now, correlation_id = datetime.now(UTC), logs.current("correlation_id")
    rows = []
    for subject, payload in firsts:
        check(event_type, payload)
        rows.append({**_row(subject, event_type, payload, source, now, correlation_id), "seq": 1})
    if not rows:
        return []
    counters = [{"subject_type": r["subject_type"], "subject_id": r["subject_id"], "last_seq": 1}
                for r in rows]
    conn.execute(db.insert_rows(EventCounter.__table__, counters))
    conn.execute(db.insert_rows(Event.__table__, rows))
    return [envelope(r) for r in rows]


def record_many(
    conn: Connection, items: list[tuple[Subject, str, dict]], source: str
) -> list[dict]:
    """Record many events `(subject, type, payload)`, of any subjects, in two statements;
    their envelopes, in the order given (each subject's events take its next `seq`s in
    that order).

    One upsert moves every subject's counter on by its number of events (its row lock
    serialises writers of one subject, as `record`'s does), then one multi-row INSERT
    stores the events.
    """
    now, correlation_id = datetime.now(UTC), logs.current("correlation_id")
    rows, counts = [], {}
    for subject, event_type, payload in items:
        check(event_type, payload)
        rows.append(_row(subject, event_type, payload, source, now, correlation_id))
        key = (subject.type, subject.id)
        counts[key] = counts.get(key, 0) + 1
    if not rows:
        return []
    # In key order: two writers of the same subjects lock their counters in one order.
    bumps = [{"subject_type": t, "subject_id": i, "last_seq": k}
             for (t, i), k in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]
    last = {(r.subject_type, r.subject_id): r.last_seq
            for r in conn.execute(_bump_counters(bumps))}
    first = {key: last[key] - k + 1 for key, k in counts.items()}
    for row in rows:
        key = (row["subject_type"], row["subject_id"])
        row["seq"], first[key] = first[key], first[key] + 1
    conn.execute(db.insert_rows(Event.__table__, rows))
    return [envelope(r) for r in rows]


def envelope(row) -> dict:
    """The wire form of a stored event (a row or a mapping of the `events` columns)."""
    r = row if isinstance(row, dict) else row._mapping
    return {
        "event_id": str(r["id"]),
        "event_type": r["event_type"],
        "seq": r["seq"],
        "timestamp": iso(r["created_at"]),
        "source_service": r["source_service"],
        "subject": {"type": r["subject_type"], "id": str(r["subject_id"])},
        "payload": r["payload"],
        "metadata": r["metadata"],
    }


# What an envelope is read from (replays here, the outbox's publish sweep).
ENVELOPE_COLUMNS = [
    Event.id,
    Event.event_type,
    Event.seq,
    Event.created_at,
    Event.source_service,
    Event.subject_type,
    Event.subject_id,
    Event.payload,
    Event.meta,
]


def for_subject(
    conn: Connection,
    subject_type: str,
    subject_id,
    since: int = 0,
    until: int | None = None,
    after: datetime | None = None,
    *,
    limit: int | None = None,
) -> list[dict]:
    """The envelopes of one subject with `since < seq <= until` (created after `after`, if
    given), in `seq` order: the first `limit` of them, if given (a page)."""
    q = select(*ENVELOPE_COLUMNS).where(
        Event.subject_type == subject_type, Event.subject_id == subject_id, Event.seq > since
    )
    if until is not None:
        q = q.where(Event.seq <= until)
    if after is not None:
        q = q.where(Event.created_at > after)
    q = q.order_by(Event.seq)
    if limit is not None:
        q = q.limit(limit)
    return [envelope(r) for r in conn.execute(q)]


def page(envelopes: list[dict], since: int, limit: int) -> dict:
    """A page of a replay read with `limit + 1`: at most `limit` envelopes, whether more
    follow, and the `since` that asks for them."""
    items = envelopes[:limit]
    return {
        "items": items,
        "next_since": items[-1]["seq"] if items else since,
        "has_more": len(envelopes) > limit,
    }


def for_tenant(
    conn: Connection, tenant_id, after: datetime, card_id: str | None = None, limit: int = 10_000
) -> list[dict]:
    """The tenant's envelopes (of one card, if given) created after `after`, oldest first."""
    q = select(*ENVELOPE_COLUMNS).where(Event.tenant_id == tenant_id, Event.created_at > after)
    if card_id is not None:
        q = q.where(Event.meta["card_id"].astext == card_id)
    return [envelope(r) for r in conn.execute(q.order_by(Event.created_at).limit(limit))]

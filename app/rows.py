"""The rows services pass around: one frozen, slotted dataclass per table a service returns.

A job, an agent or an agent command travels through `app/` as one of these, never as a dict
whose keys depend on how it was loaded: every column is a field (statuses and command names
as the enums of `app.models`), and a job or an agent also carries its tenant's name, joined
on load. `Row.of(mapping, ...)` is the one constructor from a Core row mapping; a new state
is `dataclasses.replace(row, ...)`, or the row an `UPDATE ... RETURNING` gives back.

Kept apart from `app/models.py`: the entities say what Postgres holds, these say what the
services hand each other (tests/unit/test_rows.py checks that the two agree, column by column).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.models import AgentStatus, CommandName, CommandStatus, JobStatus


def _builder(cls: type) -> Callable[[Mapping, dict], Any]:
    """`build(row, given)`: an instance of the frozen dataclass `cls`, each field from `given`
    if there, else from the mapping `row`.

    Hand-written because it is the hot path: a frozen dataclass's `__init__` sets each field
    through `object.__setattr__`, about 6 us for a job's 31 fields on our 2-core machine, and
    every claim, transition and outcome builds two rows; setting the slots through their
    descriptors costs a little over half of that. It stays the dataclass's own contract while
    the rows have no defaults and no `__post_init__` (tests/unit/test_rows.py checks both,
    and that it builds what `cls(**values)` builds). A missing column is a `KeyError`.
    """
    pairs = tuple((getattr(cls, f.name).__set__, f.name) for f in dataclasses.fields(cls))
    new = object.__new__

    def build(row: Mapping, given: dict):
        obj = new(cls)
        for set_field, name in pairs:
            set_field(obj, given[name] if name in given else row[name])
        return obj

    return build


@dataclass(frozen=True, slots=True)
class JobRow:
    """A row of `jobs`, with its tenant's name."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    params: dict
    status: JobStatus
    progress: float
    result: Any
    result_url: str | None
    error: dict | None
    attempts: int
    retry_base: int
    max_retries: int
    priority: int
    card_id: str | None
    correlation_id: str
    timeout_s: float
    idempotency_key: str | None
    cancel_requested: bool
    concurrency_key: str | None
    admitted_at: datetime | None
    dispatch_token: uuid.UUID
    agent_command_id: uuid.UUID | None
    run_after: datetime
    dispatched_at: datetime | None
    run_id: uuid.UUID | None
    worker: str | None
    heartbeat_at: datetime | None
    attempt_started_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    tenant: str  # the tenant's name (joined, not a column)

    @classmethod
    def of(cls, row: Mapping, tenant: str | None = None) -> JobRow:
        """From a row mapping of every column; `tenant` when the mapping has no `tenant`."""
        given: dict[str, Any] = {"status": JobStatus(row["status"])}
        if tenant is not None:
            given["tenant"] = tenant
        return _build_job(row, given)


@dataclass(frozen=True, slots=True)
class AgentRow:
    """A row of `agents`, with its tenant's name."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    type: str
    description: str
    config: dict
    version: int
    status: AgentStatus
    error: dict | None
    last_heartbeat: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    tenant: str  # the tenant's name (joined, not a column)

    @classmethod
    def of(cls, row: Mapping, tenant: str | None = None) -> AgentRow:
        """From a row mapping of every column; `tenant` when the mapping has no `tenant`."""
        given: dict[str, Any] = {"status": AgentStatus(row["status"])}
        if tenant is not None:
            given["tenant"] = tenant
        return _build_agent(row, given)


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A row of `agent_commands` (its agent, which carries the tenant, travels beside it)."""

    id: uuid.UUID
    seq: int
    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    command: CommandName
    params: dict
    status: CommandStatus
    result: Any
    error: dict | None
    job_id: uuid.UUID | None
    correlation_id: str
    created_by: str | None
    dispatch_token: uuid.UUID
    dispatched_at: datetime | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping) -> CommandRow:
        """From a row mapping of every column."""
        given = {"status": CommandStatus(row["status"]), "command": CommandName(row["command"])}
        return _build_command(row, given)


_build_job = _builder(JobRow)
_build_agent = _builder(AgentRow)
_build_command = _builder(CommandRow)

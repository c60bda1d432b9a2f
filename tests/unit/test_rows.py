"""The typed rows of app/rows.py: their fields are their tables' columns, and the conversions
(from a row mapping, to JSON's terms, a command as a key without `jobs:read` sees it) hold."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime

import pytest

from app.agents.scopes import WITHHELD, command_view
from app.events import plain
from app.models import (
    Agent,
    AgentCommand,
    AgentStatus,
    CommandName,
    CommandStatus,
    Job,
    JobStatus,
)
from app.outbox.send import log_headers
from app.rows import AgentRow, CommandRow, JobRow
from app.tenants import TenantRef

# Each row, its table, and the fields it carries beyond the table's columns.
ROWS = [(JobRow, Job, {"tenant"}), (AgentRow, Agent, {"tenant"}), (CommandRow, AgentCommand, set())]
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _mapping(table, **values) -> dict:
    """A row mapping as a Core SELECT of every column gives it: None where not given."""
    row = {c.name: None for c in table.__table__.columns}
    row.update(values)
    return row


def _job(**values) -> JobRow:
    base = {"id": uuid.uuid4(), "status": "queued", "tenant": "acme", "created_at": NOW}
    return JobRow.of(_mapping(Job, **{**base, **values}))


def _command(**values) -> CommandRow:
    base = {"id": uuid.uuid4(), "status": "completed", "command": "execute"}
    return CommandRow.of(_mapping(AgentCommand, **{**base, **values}))


@pytest.mark.parametrize("row_type,table,extra", ROWS)
def test_fields_are_the_columns_and_the_extras(row_type, table, extra):
    names = [f.name for f in dataclasses.fields(row_type)]
    columns = [c.name for c in table.__table__.columns]
    assert len(names) == len(set(names))
    assert set(names) == set(columns) | extra


@pytest.mark.parametrize("row_type,_table,_extra", ROWS)
def test_rows_are_frozen_and_slotted(row_type, _table, _extra):
    assert row_type.__dataclass_params__.frozen
    assert set(vars(row_type)["__slots__"]) == {f.name for f in dataclasses.fields(row_type)}


def test_a_job_mapping_becomes_a_row_with_its_status_enum_and_tenant():
    job_id = uuid.uuid4()
    row = JobRow.of(_mapping(Job, id=job_id, status="retrying", attempts=2), tenant="acme")
    assert row.id == job_id and row.attempts == 2 and row.tenant == "acme"
    assert row.status is JobStatus.RETRYING
    # The joined name on a SELECT's mapping is taken as it is.
    assert JobRow.of(_mapping(Job, id=job_id, status="queued", tenant="beta")).tenant == "beta"


def test_a_mapping_missing_a_column_or_the_tenant_is_refused():
    full = _mapping(Job, id=uuid.uuid4(), status="queued")
    with pytest.raises(KeyError):
        JobRow.of(full)  # no tenant
    del full["kind"]
    with pytest.raises(KeyError):
        JobRow.of(full, tenant="acme")


@pytest.mark.parametrize("row_type,_table,_extra", ROWS)
def test_of_builds_what_the_dataclass_constructor_builds(row_type, _table, _extra):
    """`of` sets the slots itself (app/rows.py says why): that is only the dataclass's own
    contract while no field has a default and there is no `__post_init__`."""
    fields = dataclasses.fields(row_type)
    assert all(f.default is dataclasses.MISSING for f in fields)
    assert all(f.default_factory is dataclasses.MISSING for f in fields)
    assert not hasattr(row_type, "__post_init__")
    status = {JobRow: JobStatus.FAILED, AgentRow: AgentStatus.ERROR,
              CommandRow: CommandStatus.FAILED}[row_type]
    values = {f.name: f"value of {f.name}" for f in fields}
    values["status"] = status.value
    if row_type is CommandRow:
        values["command"] = "stop"
    built = row_type.of(values)
    expected = {**values, "status": status}
    if row_type is CommandRow:
        expected["command"] = CommandName.STOP
    assert built == row_type(**expected)
    assert dataclasses.replace(built) == built


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError):
        _job(status="lost")
    with pytest.raises(ValueError):
        _command(command="dance")


def test_agent_and_command_rows_carry_their_enums():
    agent = AgentRow.of(_mapping(Agent, id=uuid.uuid4(), status="inactive"), tenant="acme")
    assert agent.status is AgentStatus.INACTIVE
    cmd = _command(status="processing", command="restart")
    assert cmd.status is CommandStatus.PROCESSING and cmd.command is CommandName.RESTART


def test_a_row_cannot_change_in_place():
    job = _job()
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = JobStatus.FAILED  # type: ignore[misc]
    later = dataclasses.replace(job, status=JobStatus.PROCESSING)
    assert later.status is JobStatus.PROCESSING and job.status is JobStatus.QUEUED


def test_plain_is_a_row_in_json_terms():
    job_id, token = uuid.uuid4(), uuid.uuid4()
    job = _job(id=job_id, dispatch_token=token, params={"a": [1]}, status="completed")
    out = plain(job)
    assert list(out) == [f.name for f in dataclasses.fields(JobRow)]
    assert out["id"] == str(job_id) and out["dispatch_token"] == str(token)
    assert out["created_at"] == "2026-01-02T03:04:05.678Z" and out["started_at"] is None
    assert out["status"] == "completed" and type(out["status"]) is str
    assert out["params"] is job.params  # not copied: plain is on the API's path
    json.dumps(out)  # nothing left that JSON cannot say


def test_a_command_of_a_job_is_withheld_from_a_key_without_jobs_read():
    job_id = uuid.uuid4()
    cmd = _command(job_id=job_id, result={"job_id": str(job_id), "result": {"secret": 1}},
                   error={"code": "JOB_FAILED", "message": "the secret"})
    reader = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"agents:read", "jobs:read"}))
    agents_only = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"agents:read"}))
    assert command_view(reader, cmd) is cmd
    seen = command_view(agents_only, cmd)
    assert seen.result == {"job_id": str(job_id), "withheld": WITHHELD}
    assert seen.error == {"code": "JOB_FAILED", "message": WITHHELD}
    assert cmd.result["result"] == {"secret": 1}  # the row itself keeps everything
    assert seen.id == cmd.id and seen.status is cmd.status


def test_a_command_without_a_job_is_shown_whole():
    agents_only = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"agents:read"}))
    cmd = _command(result={"echo": 1})
    assert command_view(agents_only, cmd) is cmd


def test_log_headers_name_the_agent_of_a_command_only():
    agent_id = uuid.uuid4()
    assert log_headers(_job(correlation_id="c1")) == {"orchestra_correlation_id": "c1"}
    assert log_headers(_command(correlation_id="c2", agent_id=agent_id)) == {
        "orchestra_correlation_id": "c2",
        "orchestra_agent_id": str(agent_id),
    }

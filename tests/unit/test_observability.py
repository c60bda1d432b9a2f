"""Pure parts of observability: the event check, the log formatters and their context."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from app import events, logs

JOB_ID = str(uuid.uuid4())


def record(message: str = "hello", **extra) -> logging.LogRecord:
    rec = logging.LogRecord("app.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_valid_payload_passes_the_catalogue_check():
    events.check(events.JOB_PROGRESS_UPDATED, {"job_id": JOB_ID, "progress": 0.5})


@pytest.mark.parametrize(
    ("event_type", "payload", "why"),
    [
        ("job.unknown", {}, "not in the event catalogue"),
        (events.JOB_PROGRESS_UPDATED, {"job_id": "nope", "progress": 0.5}, "job_id"),
        (events.JOB_PROGRESS_UPDATED, {"job_id": JOB_ID, "progress": 2}, "progress"),
        (events.JOB_STATUS_UPDATED, {"job_id": JOB_ID, "status": "done"}, "status.updated"),
    ],
)
def test_an_event_outside_the_catalogue_is_refused(event_type, payload, why):
    with pytest.raises(events.InvalidEvent, match=why):
        events.check(event_type, payload)


_STATUS = {"job_id": JOB_ID, "status": "queued", "previous_status": None, "attempt": 0}


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        (events.JOB_STATUS_UPDATED, _STATUS),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "attempt": True}),  # a bool is no integer
        (events.JOB_STATUS_UPDATED, {**_STATUS, "attempt": 1.0}),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "attempt": -1}),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "job_id": JOB_ID.replace("-", "")}),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "job_id": JOB_ID.upper()}),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "previous_status": "nope"}),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "error": {"code": "X"}}),
        (events.JOB_STATUS_UPDATED, {**_STATUS, "result_url": 3}),
        (events.JOB_PROGRESS_UPDATED, {"job_id": JOB_ID, "progress": True}),
        (events.JOB_PROGRESS_UPDATED, {"job_id": JOB_ID, "progress": 1, "message": None}),
        (events.AGENT_STATUS_CHANGED, {"agent_id": JOB_ID, "status": "idle"}),
        (events.EXECUTION_STARTED, {"command_id": JOB_ID, "agent_id": JOB_ID,
                                    "capability": "x", "job_id": None}),
    ],
)
def test_the_compiled_check_and_jsonschema_agree(event_type, payload):
    """The fast validator decides alone what it accepts: it must accept nothing jsonschema
    refuses (what it refuses, jsonschema judges again)."""
    fast_ok = True
    try:
        events._FAST[event_type](payload)
    except events.fastjsonschema.JsonSchemaException:
        fast_ok = False
    assert fast_ok == events._VALIDATORS[event_type].is_valid(payload)


def test_a_json_line_carries_the_bound_context_and_extras():
    with logs.bound(correlation_id="abc", job_id=JOB_ID, agent_id=None):
        line = logs.Json().format(record(seq=3))
    data = json.loads(line)
    assert data["message"] == "hello" and data["level"] == "INFO"
    assert data["logger"] == "app.test" and isinstance(data["process"], int) and data["ts"]
    assert data["correlation_id"] == "abc" and data["job_id"] == JOB_ID and data["seq"] == 3
    assert "agent_id" not in data  # None is left out


def test_the_context_is_gone_after_the_block_and_text_shows_it_inside():
    with logs.bound(correlation_id="abc"):
        with logs.bound(job_id=JOB_ID):
            assert logs.Text().format(record()).endswith(f"correlation_id=abc job_id={JOB_ID}")
        assert logs.current("job_id") is None and logs.current("correlation_id") == "abc"
    assert "correlation_id" not in json.loads(logs.Json().format(record()))


def test_the_access_line_takes_gunicorn_atoms_as_fields():
    rec = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(m)s %(U)s",
                            ({"m": "POST", "U": "/api/v1/jobs", "s": "202", "L": "0.01",
                              "{x-correlation-id}o": "abc"},), None)
    data = json.loads(logs.GunicornAccessJson().format(rec))
    assert data["method"] == "POST" and data["path"] == "/api/v1/jobs"
    assert data["status"] == "202" and data["correlation_id"] == "abc"

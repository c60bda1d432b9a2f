"""Schemas and input checks: pure functions, no services."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from api.auth import token_from_header
from api.errors import flatten
from api.schemas import JobListQuerySchema, JobSubmitSchema
from app import generators
from app.errors import ValidationFailed

job_submit, job_list_query = JobSubmitSchema(), JobListQuerySchema()


def test_submit_schema_accepts_a_full_request():
    req = job_submit.load(
        {"kind": "sleep", "params": {"seconds": 1}, "card_id": "c1", "priority": 9,
         "max_retries": 0, "timeout_s": 30, "countdown_s": 0}
    )
    assert req["priority"] == 9 and req["params"] == {"seconds": 1}


def test_submit_schema_defaults_params_to_an_empty_object():
    assert job_submit.load({"kind": "echo"})["params"] == {}


@pytest.mark.parametrize(
    "body,field",
    [({}, "kind"), ({"kind": ""}, "kind"), ({"kind": "echo", "priority": 1.5}, "priority"),
     ({"kind": "echo", "timeout_s": float("nan")}, "timeout_s"), ({"kind": "echo", "x": 1}, "x"),
     ({"kind": "echo", "params": "no"}, "params")],
)
def test_submit_schema_names_the_bad_field(body, field):
    with pytest.raises(ValidationError) as exc:
        job_submit.load(body)
    assert field in exc.value.messages


def test_list_query_limits():
    assert job_list_query.load({})["limit"] == 50
    with pytest.raises(ValidationError):
        job_list_query.load({"limit": "500"})


@pytest.mark.parametrize(
    "kind,params,ok",
    [("echo", {"anything": [1, 2]}, True), ("sleep", {"seconds": 0.5, "steps": 2}, True),
     ("sleep", {}, False), ("sleep", {"seconds": -1}, False), ("sleep", {"seconds": 1, "steps": 0},
     False), ("fail", {"message": "x", "transient": True, "times": 2}, True),
     ("fail", {"message": ""}, False), ("fail", {"message": "x", "times": "2"}, False)],
)
def test_generator_params_are_checked_by_their_json_schema(kind, params, ok):
    if ok:
        generators.validate_params(kind, params)
    else:
        with pytest.raises(ValidationFailed) as exc:
            generators.validate_params(kind, params)
        assert all(key.startswith("params") for key in exc.value.details)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValidationFailed) as exc:
        generators.get("teleport")
    assert "echo" in exc.value.details["kind"][0]


def test_flatten_nested_marshmallow_messages():
    assert flatten({"a": {"b": ["bad"]}, "c": ["worse"]}) == {"a.b": ["bad"], "c": ["worse"]}


@pytest.mark.parametrize(
    "header,token",
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Bearer", None), ("Basic abc", None),
     ("", None), (None, None)],
)
def test_bearer_header_parsing(header, token):
    assert token_from_header(header) == token

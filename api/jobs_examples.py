"""Examples of the job routes and the event catalogue: one sleep job, from queued to completed."""

from __future__ import annotations

from api.examples import (
    BAD_SINCE,
    CORRELATION_ID,
    CURSOR,
    EVENTS_LIMIT_TOO_BIG,
    JOB_ID,
    at,
    error,
    example,
    refused,
)
from app import generators

SLEEP_REQUEST = {"kind": "sleep", "params": {"seconds": 3, "steps": 3}, "card_id": "card-42"}
ECHO_REQUEST = {"kind": "echo", "params": {"prompt": "a lighthouse at dusk"}, "priority": 7}
FLAKY_REQUEST = {
    "kind": "fail",
    "params": {"message": "model busy", "transient": True, "times": 2},
    "max_retries": 3,
}
HTTP_REQUEST = {
    "kind": "http",
    "params": {
        "url": "https://gen.example.com/v1/images",
        "payload": {"prompt": "a lighthouse at dusk"},
        "poll_url": "https://gen.example.com/v1/images/{id}",
    },
    "timeout_s": 300,
}
LATER_REQUEST = {"kind": "echo", "params": {"note": "in ten minutes"}, "countdown_s": 600}

JOB_QUEUED = {
    "id": JOB_ID,
    "kind": "sleep",
    "params": {"seconds": 3, "steps": 3},
    "status": "queued",
    "progress": 0.0,
    "result": None,
    "result_url": None,
    "error": None,
    "attempts": 0,
    "max_retries": 3,
    "priority": 5,
    "card_id": "card-42",
    "correlation_id": CORRELATION_ID,
    "timeout_s": 3600.0,
    "cancel_requested": False,
    "concurrency_key": None,
    "created_at": at("23.123"),
    "started_at": None,
    "finished_at": None,
    "updated_at": at("23.123"),
}
JOB_PROCESSING = {
    **JOB_QUEUED,
    "status": "processing",
    "progress": 0.333,
    "attempts": 1,
    "started_at": at("23.160"),
    "updated_at": at("24.170"),
}
JOB_COMPLETED = {
    **JOB_PROCESSING,
    "status": "completed",
    "progress": 1.0,
    "result": {"slept": 3},
    "finished_at": at("26.190"),
    "updated_at": at("26.190"),
}
JOB_CANCELLING = {**JOB_PROCESSING, "cancel_requested": True, "updated_at": at("24.500")}
JOB_FAILED = {
    **JOB_PROCESSING,
    "kind": "fail",
    "params": {"message": "model refused the prompt"},
    "card_id": None,
    "max_retries": 0,
    "status": "failed",
    "progress": 0.0,
    "error": {"code": "GENERATOR_ERROR", "message": "model refused the prompt"},
    "finished_at": at("23.190"),
    "updated_at": at("23.190"),
}
JOB_RETRIED = {**JOB_FAILED, "status": "queued", "error": None, "finished_at": None}

# A batch: three jobs, the second with a key this tenant used before (its earlier job).
BATCH_REQUEST = {
    "jobs": [
        {**ECHO_REQUEST, "idempotency_key": "render-4711-a"},
        {**SLEEP_REQUEST, "idempotency_key": "order-4711"},
        {"kind": "echo", "params": {"prompt": "the same lighthouse at dawn"}},
    ]
}
_ECHO_QUEUED = {
    **JOB_QUEUED,
    "id": "3f1c2b9a-6d7e-4f80-9a1b-2c3d4e5f6a70",
    "kind": "echo",
    "params": ECHO_REQUEST["params"],
    "priority": 7,
    "card_id": None,
    "created_at": at("25.410"),
    "updated_at": at("25.410"),
}
BATCH_ANSWER = {
    "items": [
        _ECHO_QUEUED,
        JOB_PROCESSING,
        {**_ECHO_QUEUED, "id": "3f1c2b9a-6d7e-4f80-9a1b-2c3d4e5f6a71", "priority": 5,
         "params": {"prompt": "the same lighthouse at dawn"}},
    ],
    "replayed": [1],
}
_BATCH_REFUSED = error(
    "VALIDATION_ERROR",
    "2 of 3 jobs refused; none made",
    {
        "jobs.1.params.seconds": ["-1 is less than the minimum of 0"],
        "jobs.2.idempotency_key": ["used twice in this batch (item 0 has it too)"],
    },
)


def _job_event(seq: int, event_type: str, source: str, payload: dict, when: str) -> dict:
    return {
        "event_id": f"0b7e54c1-2f6a-4d8e-9c3b-5a1d7e9f20{seq:02d}",
        "event_type": event_type,
        "seq": seq,
        "timestamp": at(when),
        "source_service": source,
        "subject": {"type": "job", "id": JOB_ID},
        "payload": {"job_id": JOB_ID, **payload},
        "metadata": {
            "tenant": "acme",
            "correlation_id": CORRELATION_ID,
            "card_id": "card-42",
            "version": "1.0",
        },
    }


JOB_EVENTS = [
    _job_event(
        4,
        "job.progress.updated",
        "worker",
        {"progress": 0.6666666666666666, "message": "step 2/3"},
        "25.180",
    ),
    _job_event(
        5, "job.progress.updated", "worker", {"progress": 1.0, "message": "step 3/3"}, "26.185"
    ),
    _job_event(
        6,
        "job.status.updated",
        "worker",
        {
            "status": "completed",
            "previous_status": "processing",
            "attempt": 1,
            "result": {"slept": 3},
            "result_url": None,
        },
        "26.190",
    ),
]

_NO_JOB = error("NOT_FOUND", "no such job")
BAD_OFFSET = error(
    "VALIDATION_ERROR",
    "invalid request",
    {"offset": ["Must be greater than or equal to 0 and less than or equal to 2147483647."]},
)
_BAD_PRIORITY = error(
    "VALIDATION_ERROR",
    "invalid request",
    {"priority": ["Must be greater than or equal to 0 and less than or equal to 9."]},
)


def jobs() -> dict:
    """The examples of the job routes; the unknown kind is refused by its plugin registry, so the
    example names the generators this deployment has."""
    return {
        ("post", "/api/v1/jobs"): {
            "request": {
                "sleep": example("A sleep job that reports progress three times", SLEEP_REQUEST),
                "echo": example("An echo job: its result is its params", ECHO_REQUEST),
                "flaky": example(
                    "Fails its first two attempts, then completes: retries to watch",
                    FLAKY_REQUEST,
                ),
                "http": example(
                    "Calls a generation service and polls it until done (kept as result_url)",
                    HTTP_REQUEST,
                ),
                "later": example("Waits in Postgres for ten minutes before it runs", LATER_REQUEST),
            },
            "parameters": {
                "Idempotency-Key": {
                    "key": example(
                        "Safe to send again: the same key finds the same job", "order-4711"
                    )
                }
            },
            "responses": {
                "202": {"queued": example("The job, queued", JOB_QUEUED)},
                "200": {
                    "replayed": example(
                        "The Idempotency-Key was used before: the original job, no second one",
                        JOB_PROCESSING,
                    )
                },
                "422": {
                    "bad_field": example(
                        "A field out of range, named in details",
                        _BAD_PRIORITY,
                    ),
                    "unknown_kind": example(
                        "No generator has this kind; nothing was created",
                        refused(generators.get, "paint"),
                    ),
                    "bad_params": example(
                        "The generator's params schema refused them",
                        error(
                            "VALIDATION_ERROR",
                            "params rejected by the generator",
                            {"params.seconds": ["-1 is less than the minimum of 0"]},
                        ),
                    ),
                },
            },
        },
        ("post", "/api/v1/jobs/batch"): {
            "request": {
                "three": example(
                    "Three jobs at once, two with a key of their own (up to 1,000)",
                    BATCH_REQUEST,
                ),
            },
            "responses": {
                "202": {
                    "queued": example(
                        "A job per item, in order; item 1's key was used before: its job",
                        BATCH_ANSWER,
                    )
                },
                "422": {
                    "refused_items": example(
                        "Items refused, each by its index; nothing was made",
                        _BATCH_REFUSED,
                    ),
                    "too_many": example(
                        "More than 1,000 jobs",
                        error(
                            "VALIDATION_ERROR",
                            "invalid request",
                            {"jobs": ["Length must be between 1 and 1000."]},
                        ),
                    ),
                },
                "409": {
                    "changed": example(
                        "A job found by its key was removed meanwhile (retention): send again",
                        error(
                            "CONFLICT",
                            "a job of this batch changed while it was submitted; send the "
                            "batch again",
                            {"jobs.1.idempotency_key": ["its job was just removed"]},
                        ),
                    )
                },
            },
        },
        ("get", "/api/v1/jobs"): {
            "parameters": {
                "status": {"filter": example("Only queued jobs", "queued")},
                "kind": {"filter": example("Only sleep jobs", "sleep")},
                "limit": {
                    "filter": example("At most 20 a page", 20),
                    "next_page": example("At most 20 a page", 20),
                },
                "cursor": {"next_page": example("The `next_cursor` of the page before", CURSOR)},
                "card_id": {"by_card": example("The jobs of one card", "card-42")},
            },
            "responses": {
                "200": {
                    "page": example(
                        "Newest first; `next_cursor` is null on the last page",
                        {"items": [JOB_COMPLETED], "next_cursor": CURSOR},
                    )
                },
                "422": {
                    "bad_cursor": example(
                        "A cursor the API did not issue",
                        error(
                            "VALIDATION_ERROR",
                            "bad cursor",
                            {"cursor": ["not a cursor this API issued"]},
                        ),
                    ),
                    "bad_status": example(
                        "A status that does not exist",
                        error(
                            "VALIDATION_ERROR",
                            "invalid request",
                            {
                                "status": [
                                    "Must be one of: queued, processing, retrying, completed, "
                                    "failed, cancelled."
                                ]
                            },
                        ),
                    ),
                },
            },
        },
        ("get", "/api/v1/jobs/{job_id}"): {
            "responses": {
                "200": {
                    "completed": example("A completed job with its result",
                                         {**JOB_COMPLETED, "waiting_reason": None}),
                    "failed": example("A failed job: the generator's own message",
                                      {**JOB_FAILED, "waiting_reason": None}),
                    "waiting": example(
                        "A queued job held back by its concurrency key",
                        {**JOB_QUEUED, "concurrency_key": "user-42", "waiting_reason": {
                            "code": "key_limit", "key": "user-42", "running": 2, "limit": 2,
                            "message": "key user-42 at 2 of 2"}},
                    ),
                },
                "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
            },
        },
        ("post", "/api/v1/jobs/{job_id}/cancel"): {
            "request": {"empty": example("No body is needed; an empty object is accepted", {})},
            "responses": {
                "202": {
                    "cancelling": example(
                        "A processing job: it stops at its next check and ends `cancelled`",
                        JOB_CANCELLING,
                    )
                },
                "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
                "409": {
                    "terminal": example(
                        "The job already ended",
                        error(
                            "INVALID_TRANSITION",
                            "a completed job cannot become cancelled",
                            {"status": ["is completed"]},
                        ),
                    )
                },
            },
        },
        ("post", "/api/v1/jobs/{job_id}/retry"): {
            "request": {"empty": example("No body is needed; an empty object is accepted", {})},
            "responses": {
                "202": {
                    "queued_again": example("Queued again; `attempts` keeps counting", JOB_RETRIED)
                },
                "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
                "409": {
                    "not_ended": example(
                        "Only a failed or cancelled job can be retried",
                        error(
                            "INVALID_TRANSITION",
                            "a completed job cannot become queued",
                            {"status": ["is completed"]},
                        ),
                    )
                },
            },
        },
        ("get", "/api/v1/jobs/{job_id}/events"): {
            "parameters": {
                "since": {"after_3": example("The events after seq 3", 3)},
                "limit": {"two": example("Two events a page", 2)},
            },
            "responses": {
                "200": {
                    "events": example(
                        "In seq order, as the relay sends them; the last page",
                        {"items": JOB_EVENTS, "next_since": 6, "has_more": False},
                    ),
                    "a_page": example(
                        "A page of two with more to follow: ask again with since=5",
                        {"items": JOB_EVENTS[:2], "next_since": 5, "has_more": True},
                    ),
                },
                "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
                "422": {
                    "bad_since": example("A negative seq", BAD_SINCE),
                    "too_many": example("More than 1,000 a page", EVENTS_LIMIT_TOO_BIG),
                },
            },
        },
        ("get", "/api/v1/jobs/{job_id}/output"): {
            "parameters": {
                "offset": {"read_on": example("The first 17 characters were read", 17)},
            },
            "responses": {
                "200": {
                    "so_far": example(
                        "A job still streaming: read on from offset 30",
                        {"job_id": JOB_ID, "attempt": 1, "status": "processing", "done": False,
                         "text": "A lighthouse at dusk, its beam", "offset": 30, "deltas": [],
                         "delta_offset": 0},
                    ),
                    "whole": example(
                        "The job ended: the output is whole",
                        {"job_id": JOB_ID, "attempt": 1, "status": "completed", "done": True,
                         "text": "A lighthouse at dusk, its beam sweeping the fog.",
                         "offset": 48, "deltas": [], "delta_offset": 0},
                    ),
                },
                "404": {"no_such_job": example("No such job for this tenant", _NO_JOB)},
                "422": {"bad_offset": example("A negative offset", BAD_OFFSET)},
            },
        },
        ("get", "/api/v1/jobs/{job_id}/result"): {
            "responses": {
                "200": {
                    "echo": example(
                        "An echo job's artifact: its params, as application/json",
                        ECHO_REQUEST["params"],
                    )
                },
                "404": {
                    "no_artifact": example(
                        "The job wrote no artifact (yet)",
                        error("NOT_FOUND", "this job has no result artifact"),
                    ),
                    "no_such_job": example("No such job for this tenant", _NO_JOB),
                },
            },
        },
        ("get", "/api/v1/generators"): {
            "responses": {
                "200": {
                    "kinds": example(
                        "Every job kind with its params schema (one shown)",
                        {
                            "items": [
                                {
                                    "kind": "sleep",
                                    "description": _first_line(generators.get("sleep")),
                                    "params_schema": generators.get("sleep").params_schema,
                                }
                            ]
                        },
                    )
                }
            }
        },
        ("get", "/api/v1/event-types"): {
            "responses": {
                "200": {
                    "catalogue": example(
                        "Every event type with its payload's JSON Schema (one shown)",
                        {
                            "items": [
                                {
                                    "event_type": "job.progress.updated",
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "job_id": {"type": "string", "format": "uuid"},
                                            "progress": {
                                                "type": "number",
                                                "minimum": 0,
                                                "maximum": 1,
                                            },
                                            "message": {"type": "string"},
                                        },
                                        "required": ["job_id", "progress"],
                                    },
                                }
                            ]
                        },
                    )
                }
            },
        },
    }


def _first_line(gen) -> str:
    """A generator's description, as GET /api/v1/generators gives it."""
    return (type(gen).__doc__ or "").strip().splitlines()[0]

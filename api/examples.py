"""The story the named examples of the document tell, shared by every blueprint's examples
(`api/jobs_examples.py`, `api/agents_examples.py`, `api/operations_examples.py`): its ids and
times, the helpers that write an Example Object and the error envelope, and the examples of the
refusals every route of a kind shares (auth, scope, body, rate limit, a dependency away).

They tell one story (a tenant `acme`, one sleep job, one echo agent called `scribe`), with the
values a real run gave. Tests keep them true: each is validated against its own schema in the
document, and the requests are replayed against the real app, which must answer with the
documented status and the same fields (tests/integration/test_openapi_examples.py).

Query parameters carry their examples by name: the parameters whose examples share a name
make one request together (`filter`: `status=queued&kind=sleep&limit=20`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from app import pages
from app.errors import ServiceError


def example(summary: str, value) -> dict:
    """An OpenAPI Example Object."""
    return {"summary": summary, "value": value}


def error(code: str, message: str, details: dict | None = None) -> dict:
    """The error envelope the API answers with (api/errors.py)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def refused(call, *args) -> dict:
    """The envelope of the domain's own refusal of `call(*args)`, for an example whose words
    depend on what is installed (the known kinds, say)."""
    try:
        call(*args)
    except ServiceError as exc:
        return error(exc.code, exc.message, exc.details)
    raise AssertionError(f"{call.__name__}{args} was not refused")


# --- the story's ids and times --------------------------------------------------------------

JOB_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
CORRELATION_ID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
AGENT_ID = "9b2d4c1a-3e5f-4a6b-8c7d-0e1f2a3b4c5d"
START_ID = "1d6f0e2a-8b3c-4d5e-9f60-7a8b9c0d1e2f"
EXECUTE_ID = "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8"
KEY_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
KEY_PREFIX = "orc_9fQ2-xWbT"
_CREATED = datetime(2026, 11, 21, 8, 45, 23, 123456, tzinfo=UTC)
# A cursor as the API issues it (after the job above), so the example is one the API accepts.
CURSOR = pages.encode_cursor({"created_at": _CREATED, "id": JOB_ID})


def at(seconds: str) -> str:
    """A time of the story, as the API writes times (ISO 8601 UTC, milliseconds, `Z`)."""
    return f"2026-11-21T08:45:{seconds}Z"


BAD_SINCE = error(
    "VALIDATION_ERROR",
    "invalid request",
    {"since": ["Must be greater than or equal to 0 and less than or equal to 2147483647."]},
)
# An event replay is paged: at most 1,000 events an answer.
EVENTS_LIMIT_TOO_BIG = error(
    "VALIDATION_ERROR",
    "invalid request",
    {"limit": ["Must be greater than or equal to 1 and less than or equal to 1000."]},
)


# --- the refusals every route of a kind shares ------------------------------------------------


def _area(path: str) -> str:
    """The scope area of an `/api/v1` path: the blueprint that serves it."""
    agents = path.startswith(("/api/v1/agents", "/api/v1/agent-types", "/api/v1/audit"))
    return "agents" if agents else "jobs"


def shared_errors(path: str, method: str) -> dict[str, dict]:
    """The examples of the refusals every route of its kind shares, by status."""
    scope = f"{_area(path)}:{'read' if method == 'get' else 'write'}"
    return {
        "400": {
            "bad_json": example(
                "The body is not JSON",
                error(
                    "BAD_JSON",
                    "the body is not valid JSON",
                    {
                        "_schema": [
                            "Expecting property name enclosed in double quotes: line 1 column 2 "
                            "(char 1)"
                        ]
                    },
                ),
            )
        },
        "401": {
            "missing_key": example(
                "No `Authorization: Bearer` header",
                error("UNAUTHORIZED", "missing or malformed bearer token"),
            ),
            "unknown_key": example(
                "A key the API does not know", error("UNAUTHORIZED", "unknown API key")
            ),
        },
        "403": {
            "missing_scope": example(
                "The key lacks the scope",
                error(
                    "FORBIDDEN",
                    f"this key lacks the {scope} scope",
                    {"scope": [f"requires {scope}"]},
                ),
            )
        },
        "413": {
            "too_large": example(
                "Over MAX_BODY_BYTES (256 KiB by default)",
                error(
                    "PAYLOAD_TOO_LARGE", "The data value transmitted exceeds the capacity limit."
                ),
            )
        },
        "415": {
            "not_json": example(
                "A body that is not application/json",
                error("UNSUPPORTED_MEDIA_TYPE", "the body must be application/json"),
            )
        },
        "422": {}
        if method == "get"
        else {
            "not_an_object": example(
                "The body must be a JSON object",
                error(
                    "VALIDATION_ERROR",
                    "the body must be a JSON object",
                    {"_schema": ["expected an object"]},
                ),
            )
        },
        "429": {
            "rate_limited": example(
                "Over the key's RATE_LIMIT; Retry-After says when to come back",
                error("RATE_LIMITED", "600 per 1 minute"),
            )
        },
        "503": {
            "database_down": example(
                "Postgres did not answer; nothing was written",
                error(
                    "DEPENDENCY_UNAVAILABLE",
                    "database is unavailable",
                    {"dependency": ["connection refused"]},
                ),
            )
        },
    }

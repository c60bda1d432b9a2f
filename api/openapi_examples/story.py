"""The story the examples tell, shared by every part: its ids and times, and the helpers
that write an Example Object and the error envelope."""

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

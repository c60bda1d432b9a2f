"""Examples of the refusals every route of a kind shares: auth, scope, body, rate limit,
and a dependency away."""

from __future__ import annotations

from api.openapi_examples.story import error, example


def _area(path: str) -> str:
    """The scope area of an `/api/v1` path: the blueprint that serves it."""
    return "jobs" if path.startswith(("/api/v1/jobs", "/api/v1/event-types")) else "agents"


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

"""Examples of the scheduling routes: a tenant on the default limits, one paused kind, and a
user's key held to two running jobs."""

from __future__ import annotations

from api.examples import at, error, example

LIMITS = {"weight": 1.0, "max_running": 100, "max_priority": 9, "key_limit": 10, "own": []}
PAUSED_HTTP = {"tenant": "acme", "kind": "http", "since": at("20.500")}
KEY = {"key": "user-42", "max_running": 2, "own": True, "running": 2}
_NOT_ADMIN = error("FORBIDDEN", "this key lacks the admin scope", {"scope": ["requires admin"]})
_BAD_KEY = error("VALIDATION_ERROR", "bad concurrency key",
                 {"key": ["1-255 letters, digits or ._:@-"]})
_BAD_PAGE = error("VALIDATION_ERROR", "invalid request",
                  {"limit": ["Must be greater than or equal to 1 and less than or equal to 500."]})
_BAD_LIMIT = error("VALIDATION_ERROR", "invalid request",
                   {"max_running": ["Must be greater than or equal to 0 and less than or "
                                    "equal to 100000."]})


def scheduling() -> dict:
    """The examples of the scheduling routes."""
    return {
        ("get", "/api/v1/scheduling"): {
            "responses": {"200": {"busy": example(
                "Defaults in force, 100 jobs holding slots and more waiting, http paused",
                {"limits": LIMITS, "running": 100, "waiting": 4900, "pauses": [PAUSED_HTTP]},
            )}},
        },
        ("get", "/api/v1/pauses"): {
            "responses": {"200": {"one": example("The tenant's http jobs are paused",
                                                 {"items": [PAUSED_HTTP]})}},
        },
        ("post", "/api/v1/pauses"): {
            "request": {"kind": example("Hold back the http jobs", {"kind": "http"})},
            "responses": {
                "200": {"paused": example("Paused now", {"tenant": "acme", "kind": "http",
                                                         "paused": True, "changed": True})},
                "403": {"not_admin": example("The key lacks the admin scope", _NOT_ADMIN)},
            },
        },
        ("post", "/api/v1/pauses/resume"): {
            "request": {"kind": example("Let the http jobs go", {"kind": "http"})},
            "responses": {
                "200": {"resumed": example("Resumed: they are admitted in fair order",
                                           {"tenant": "acme", "kind": "http", "paused": False,
                                            "changed": True})},
            },
        },
        ("get", "/api/v1/concurrency-keys"): {
            "parameters": {"limit": {"few": example("Ten at a time", 10)}},
            "responses": {
                "200": {"one": example("One key with its own limit",
                                       {"items": [KEY], "next_after": None})},
                "422": {"bad_limit": example("A page of none", _BAD_PAGE)},
            },
        },
        ("get", "/api/v1/concurrency-keys/{key}"): {
            "parameters": {"key": {"user": example("A user's key", "user-42")}},
            "responses": {"200": {"at_limit": example("Two of two running", KEY)},
                          "422": {"bad_key": example("Not a key", _BAD_KEY)}},
        },
        ("put", "/api/v1/concurrency-keys/{key}"): {
            "parameters": {"key": {"user": example("A user's key", "user-42")}},
            "request": {"two": example("At most two at once", {"max_running": 2})},
            "responses": {
                "200": {"set": example("Set", KEY)},
                "422": {"bad_limit": example("Out of range", _BAD_LIMIT),
                        "bad_key": example("Not a key", _BAD_KEY)},
            },
        },
        ("delete", "/api/v1/concurrency-keys/{key}"): {
            "parameters": {"key": {"user": example("A user's key", "user-42")}},
            "request": {"empty": example("No body is needed", {})},
            "responses": {"200": {"default": example(
                "Back on the tenant's default", {**KEY, "max_running": 10, "own": False})},
                          "422": {"bad_key": example("Not a key", _BAD_KEY)}},
        },
    }

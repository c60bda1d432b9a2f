"""`ServiceError` and its categories: what the domain says went wrong, each with a code."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure the caller can understand; adapters map `category` to a status."""

    category = "error"
    code = "ERROR"

    def __init__(self, message: str, details: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class NotFound(ServiceError):
    category = "not_found"
    code = "NOT_FOUND"


class ValidationFailed(ServiceError):
    category = "validation"
    code = "VALIDATION_ERROR"


class Forbidden(ServiceError):
    """The key holds the route's scope but not one the operation needs beyond it."""

    category = "forbidden"
    code = "FORBIDDEN"


class Conflict(ServiceError):
    category = "conflict"
    code = "CONFLICT"


class InvalidTransition(Conflict):
    code = "INVALID_TRANSITION"


class Unavailable(ServiceError):
    """A dependency (database, redis, broker) could not be reached."""

    category = "unavailable"
    code = "DEPENDENCY_UNAVAILABLE"

    def __init__(self, dependency: str, reason: str = ""):
        super().__init__(f"{dependency} is unavailable", {"dependency": [reason or "unreachable"]})
        self.dependency = dependency

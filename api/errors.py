"""The one error envelope: `{"error": {code, message, details}}`, for every failure."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from app.errors import ServiceError

log = logging.getLogger(__name__)

_STATUS_BY_CATEGORY = {
    "not_found": 404,
    "validation": 422,
    "forbidden": 403,
    "conflict": 409,
    "unavailable": 503,
}
_CODE_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
}


class ApiError(Exception):
    """An HTTP-level refusal raised by the adapters (auth, body parsing)."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error_response(status: int, code: str, message: str, details: dict | None = None):
    """Render the envelope."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    resp = jsonify(body)
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = "Bearer"
    return resp


def flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as `{"a.b": ["why"]}`."""
    if isinstance(messages, list):
        return {prefix or "_schema": [str(m) for m in messages]}
    out: dict[str, list[str]] = {}
    for key, value in messages.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def register(app: Flask) -> None:
    """Install the handlers that turn every failure into the envelope."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        status = _STATUS_BY_CATEGORY.get(exc.category, 400)
        if status >= 500:
            log.warning("%s %s: %s %s", request.method, request.path, exc.code, exc.details)
        return error_response(status, exc.code, exc.message, exc.details)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        return error_response(422, "VALIDATION_ERROR", "invalid request", flatten(exc.messages))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = _CODE_BY_STATUS.get(status, "HTTP_ERROR")
        return error_response(status, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        tenant = getattr(g, "tenant", None)
        log.exception(
            "unhandled error on %s %s (tenant %s)",
            request.method,
            request.path,
            tenant.name if tenant else "-",
        )
        return error_response(500, "INTERNAL_ERROR", "an unexpected error occurred")

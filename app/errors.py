"""One error shape for the JSON API and friendly pages for browsers.

``ApiError`` carries a status, a machine-readable code, a message and optional per-field
messages. Anything under ``/api/`` answers ``{"error": {...}}``; pages render a template.
A database or Redis outage becomes a 503 rather than a 500.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.refusals import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refusal,
    TooMany,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

# What a client that failed the CSRF check should do instead.
CSRF_HINT_API = (
    "Send the csrfToken from GET /api/auth/csrf in the X-CSRFToken header, with the session cookie that answer set."
)
CSRF_HINT_PAGE = "This form has expired or came from another site. Go back, reload the page and try again."


# The one place where a domain refusal becomes an HTTP status (app/refusals.py).
REFUSAL_STATUS: dict[type[Refusal], int] = {
    BadRequest: 400,
    Unauthenticated: 401,
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
    TooMany: 429,
    Unavailable: 503,
}


def refusal_status(refusal: Refusal) -> int:
    for kind in type(refusal).__mro__:
        if kind in REFUSAL_STATUS:
            return REFUSAL_STATUS[kind]
    return 400


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/webhooks/")


def error_response(status: int, code: str, message: str, fields: dict[str, str] | None = None) -> Response:
    if wants_json():
        body: dict[str, object] = {"code": code, "message": message}
        if fields:
            body["fields"] = fields
        response = jsonify(error=body)
    else:
        response = Response(
            render_template("errors/error.html", status=status, message=message),
            mimetype="text/html",
        )
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, error.fields)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(Refusal)
    def handle_refusal(refusal: Refusal) -> Response:
        response = error_response(refusal_status(refusal), refusal.code, refusal.message, refusal.fields)
        if isinstance(refusal, TooMany) and refusal.retry_after is not None:
            response.headers["Retry-After"] = str(refusal.retry_after)
        return response

    @app.errorhandler(CSRFError)
    def handle_csrf_error(error: CSRFError) -> Response:
        hint = CSRF_HINT_API if wants_json() else CSRF_HINT_PAGE
        return error_response(400, "bad_request", f"{error.description} {hint}")

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = error_response(status, _CODES.get(status, "error"), error.description or error.name)
        if status == 429 and error.response is not None:
            retry_after = error.response.headers.get("Retry-After")
            if retry_after:
                response.headers["Retry-After"] = retry_after
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def handle_database_down(error: Exception) -> Response:
        log.error("database unavailable", extra={"error": type(error).__name__})
        return _unavailable("database")

    @app.errorhandler(DBAPIError)
    def handle_database_error(error: DBAPIError) -> Response:
        if error.connection_invalidated:
            return _unavailable("database")
        log.exception("database error")
        return error_response(500, "internal_error", "Something went wrong on our side. Please try again.")

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def handle_redis_down(error: Exception) -> Response:
        log.error("redis unavailable", extra={"error": type(error).__name__})
        return _unavailable("redis")

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side. Please try again.")


def _unavailable(part: str) -> Response:
    response = error_response(
        503, "unavailable", "ChatLink is briefly unavailable. Please try again in a moment.", {"service": part}
    )
    response.headers["Retry-After"] = "5"
    return response

"""``GET /metrics`` in the Prometheus text format, optionally behind ``METRICS_TOKEN``; and a
count of every HTTP request by route and status."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue

from app import metrics
from app.errors import ApiError

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_view() -> ResponseReturnValue:
    token = current_app.extensions["settings"].metrics_token
    if token and not _bearer_matches(token):
        raise ApiError(
            401, "A valid bearer token is required.", code="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )
    response = Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_matches(token: str) -> bool:
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    # Constant-time comparison, so the token cannot be guessed one character at a time.
    return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), token.encode())


@bp.after_app_request
def count_request(response: Response) -> Response:
    # The route pattern (``/u/<slug>``), never the raw path, keeps the number of series bounded.
    rule = request.url_rule.rule if request.url_rule is not None else None
    metrics.http_request(request.method, rule, response.status_code)
    return response

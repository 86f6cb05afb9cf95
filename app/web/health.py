"""``GET /api/health``: 200 when the database and Redis answer, 503 naming the part that is down."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from app.db import db
from app.extensions import limiter, redis_client
from app.services.health import check_health

bp = Blueprint("health", __name__)


@bp.get("/api/health")
@limiter.exempt
def health() -> ResponseReturnValue:
    settings = current_app.extensions["settings"]
    report = check_health(
        db.require_engine(),
        redis_client(),
        settings.celery_queue,
        stale_after=max(30, settings.sweep_interval_seconds * 6),
    )
    return jsonify(report.as_dict()), 200 if report.ok else 503

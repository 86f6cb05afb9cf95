"""Logs as one JSON line per event, with the request id (web) or task id (worker); email masking;
Sentry when SENTRY_DSN is set."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

from app.config import Settings

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def mask_email(value: str | None) -> str:
    """``jane.doe@example.com`` → ``j***@example.com``: enough to tell rows apart in a log,
    not enough to identify a person."""
    if not value:
        return ""
    return _EMAIL.sub(r"\1***@\2", value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_email(record.getMessage()),
        }
        request_id = _current_request_id()
        if request_id:
            entry["request_id"] = request_id
        task_id = _current_task_id()
        if task_id:
            entry["task_id"] = task_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = mask_email(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _current_request_id() -> str | None:
    if has_request_context():
        request_id = g.get("request_id")
        return request_id if isinstance(request_id, str) else None
    return None


def _current_task_id() -> str | None:
    from celery import current_task

    try:
        return current_task.request.id if current_task else None
    except Exception:  # no task executing in this thread
        return None


class QuietSweep(logging.Filter):
    """Drop Celery's own INFO lines about the sweep (sent, received, succeeded): beat runs it every
    5 seconds, and the lines would bury everything else. Its failures are warnings and still pass."""

    LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith(self.LOGGERS):
            return True
        return "tasks.maintenance.sweep" not in record.getMessage()


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(QuietSweep())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("werkzeug", "urllib3", "stripe", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def init_request_ids(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if re.fullmatch(r"[A-Za-z0-9-]{8,64}", incoming) else uuid.uuid4().hex

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response


def init_sentry(settings: Settings) -> None:
    if not settings.sentry_dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.app_env,
        integrations=[FlaskIntegration(), CeleryIntegration()],
        # Sentry's default sends no PII (no IPs, cookies or user emails); we keep that default.
        traces_sample_rate=0.0,
    )

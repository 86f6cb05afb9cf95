"""Prometheus metrics: every counter and histogram ChatLink exports, with one tiny helper each.

Multiprocess mode: gunicorn runs several worker processes and Celery forks pool children, so a
counter kept in one process's memory would make ``GET /metrics`` answer with whichever process
happened to serve the scrape. prometheus_client's multiprocess mode has each process write its
values to its own memory-mapped file in ``PROMETHEUS_MULTIPROC_DIR``, and the exposition adds
every file up. The library reads that variable once, when it is imported, which is why
``prepare_metrics_dir()`` runs right here before the import and why no other module may import
``prometheus_client`` directly: import this module instead.

The helpers never raise: a full disk or a bad label must not roll back a payment. Services call
them through ``app.db.on_commit`` where the event only counts once the transaction commits.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from app.config import prepare_metrics_dir

METRICS_DIR = prepare_metrics_dir()

from prometheus_client import (  # noqa: E402 (PROMETHEUS_MULTIPROC_DIR must be set first)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

log = logging.getLogger(__name__)

if not values.ValueClass._multiprocess:
    # Someone imported prometheus_client before this module set the directory: every count of this
    # process would stay in its memory and never reach GET /metrics. Fail loudly instead.
    raise RuntimeError("prometheus_client was imported before app.metrics; import the app package first")

__all__ = ["CONTENT_TYPE_LATEST", "METRICS_DIR", "exposition"]

# --- Money in --------------------------------------------------------------------------------

CHECKOUTS_STARTED = Counter("chatlink_checkouts_started", "Checkout Sessions created for a buyer.")
CHECKOUTS_COMPLETED = Counter("chatlink_checkouts_completed", "Paid checkouts turned into call requests.")
WEBHOOK_EVENTS = Counter(
    "chatlink_webhook_events",
    "Stripe webhook events, by event type and outcome (received, duplicate, invalid, processed, ignored, failed).",
    ["type", "outcome"],
)

# --- Requests and calls ----------------------------------------------------------------------

REQUESTS_ACCEPTED = Counter("chatlink_requests_accepted", "Call requests accepted by the seller.")
REQUESTS_DECLINED = Counter("chatlink_requests_declined", "Call requests declined by the seller.")
REQUESTS_EXPIRED = Counter("chatlink_requests_expired", "Pending call requests that expired unanswered.")
CALLS_STARTED = Counter("chatlink_calls_started", "Calls whose clock started (both parties present).")
CALLS_ENDED = Counter(
    "chatlink_calls_ended", "Calls ended, by who ended them (timer, sweep, seller, admin).", ["ended_by"]
)
CALL_END_LATENESS = Histogram(
    "chatlink_call_end_lateness_seconds",
    "How long after ends_at a call was actually ended.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

# --- Email -----------------------------------------------------------------------------------

EMAILS_SENT = Counter("chatlink_emails_sent", "Emails handed to the provider, by template.", ["template"])
EMAILS_FAILED = Counter(
    "chatlink_emails_failed",
    "Email delivery attempts that failed, by template and kind (temporary: retried; permanent: given up).",
    ["template", "kind"],
)

# --- Money out -------------------------------------------------------------------------------

PAYOUTS_REQUESTED = Counter("chatlink_payouts_requested", "Payouts requested by sellers.")
PAYOUTS_PROCESSED = Counter("chatlink_payouts_processed", "Payouts marked processed by an admin.")
PAYOUTS_REJECTED = Counter("chatlink_payouts_rejected", "Payouts rejected by an admin (amount returned).")

# --- Web -------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "chatlink_http_requests", "HTTP requests served, by method, route and status.", ["method", "route", "status"]
)

_LABEL = re.compile(r"[A-Za-z0-9_.:/<>-]{1,80}")

F = TypeVar("F", bound=Callable[..., None])


def _never_raise(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("metric update failed", exc_info=True, extra={"metric": fn.__name__})

    return cast(F, wrapper)


def _label(value: object) -> str:
    """Labels come from a known, small set; anything odd is folded into ``other`` so a strange
    value can never create an unbounded number of series."""
    text = str(value or "")
    return text if _LABEL.fullmatch(text) else "other"


@_never_raise
def checkout_started() -> None:
    CHECKOUTS_STARTED.inc()


@_never_raise
def checkout_completed() -> None:
    CHECKOUTS_COMPLETED.inc()


@_never_raise
def webhook_event(event_type: str, outcome: str) -> None:
    WEBHOOK_EVENTS.labels(type=_label(event_type), outcome=_label(outcome)).inc()


@_never_raise
def request_accepted() -> None:
    REQUESTS_ACCEPTED.inc()


@_never_raise
def request_declined() -> None:
    REQUESTS_DECLINED.inc()


@_never_raise
def requests_expired(count: int = 1) -> None:
    if count > 0:
        REQUESTS_EXPIRED.inc(count)


@_never_raise
def call_started() -> None:
    CALLS_STARTED.inc()


@_never_raise
def call_ended(ended_by: str | None, *, ends_at: datetime | None = None, ended_at: datetime | None = None) -> None:
    """Count an ended call; when it ended at or after ``ends_at`` (the timer, the sweep), observe how
    late. A call the seller ended early was not late, so it adds nothing to the histogram."""
    CALLS_ENDED.labels(ended_by=_label(ended_by or "unknown")).inc()
    if ends_at is not None and ended_at is not None and ended_at >= ends_at:
        CALL_END_LATENESS.observe((ended_at - ends_at).total_seconds())


@_never_raise
def email_sent(template: str) -> None:
    EMAILS_SENT.labels(template=_label(template)).inc()


@_never_raise
def email_failed(template: str, *, permanent: bool) -> None:
    EMAILS_FAILED.labels(template=_label(template), kind="permanent" if permanent else "temporary").inc()


@_never_raise
def payout_requested() -> None:
    PAYOUTS_REQUESTED.inc()


@_never_raise
def payout_processed() -> None:
    PAYOUTS_PROCESSED.inc()


@_never_raise
def payout_rejected() -> None:
    PAYOUTS_REJECTED.inc()


@_never_raise
def http_request(method: str, route: str | None, status: int) -> None:
    HTTP_REQUESTS.labels(method=_label(method), route=_label(route or "unmatched"), status=str(status)).inc()


def exposition() -> bytes:
    """The Prometheus text format of every live and finished ChatLink process sharing the directory."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(METRICS_DIR))
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """Forget a finished process's live gauges (called from the gunicorn and Celery hooks). Its
    counters stay: a total must not go down because the worker that counted it exited."""
    multiprocess.mark_process_dead(pid, str(METRICS_DIR))


def _connect_celery_hook() -> None:
    from celery.signals import worker_process_shutdown

    @worker_process_shutdown.connect(weak=False)
    def _pool_child_exited(**kwargs: object) -> None:
        mark_process_dead(os.getpid())


_connect_celery_hook()

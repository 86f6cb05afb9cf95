"""Celery, wired the Flask way (``celery_init_app``), and the policy every task follows.

Acknowledgement and retries, in one place:

* ``task_acks_late`` with ``task_reject_on_worker_lost``: a message is acknowledged only after
  its task finished, so a worker killed mid-task (SIGKILL, OOM, a lost machine) leaves the
  message to be redelivered rather than lost. The price is that a task may run twice; every
  ChatLink task is repeat-safe (conditional UPDATEs, UNIQUE provider ids, outbox rows marked
  sent), so running twice is harmless.
* ``worker_prefetch_multiplier = 1``: a worker holds one waiting message per process, so a
  slow task does not strand others behind it.
* Redis ``visibility_timeout`` = ``CELERY_VISIBILITY_TIMEOUT`` (900 s): Redis has no real
  acknowledgements; a message not acknowledged within this time is handed to another worker.
  It must exceed our longest ETA (the end of a call, at most CALL_DURATION_SECONDS ahead, which
  config caps below it) and the longest task, or a healthy worker's task would be duplicated.
  It is kept short (not the 1 h default) so that work held by a dead worker comes back within
  15 minutes; the time-critical work (ending calls, expiring requests) does not even wait for
  that, because the beat sweep finds it in the database every few seconds.
* Retries: a task retries only errors that a later attempt can fix (network errors, 429 and 5xx
  from a provider), with exponential backoff and jitter (``retry_backoff``), capped at
  ``RETRY_BACKOFF_MAX``. Permanent errors (a 4xx that will not change) are recorded and not
  retried. Each task declares its own ``autoretry_for`` and ``max_retries``.
* Enqueueing happens after commit (``app.queue.enqueue_after_commit``). If the broker is down at that
  moment the data is still committed and the sweep re-enqueues it: nothing is lost.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from celery import Celery, Task, shared_task
from flask import Flask, current_app, has_app_context
from sqlalchemy.exc import OperationalError

from app.config import CELERY_VISIBILITY_TIMEOUT, Settings
from app.extensions import celery_broker_url

log = logging.getLogger(__name__)

RETRY_BACKOFF_MAX = 600

P = ParamSpec("P")
R = TypeVar("R")


def chatlink_task(
    *,
    retry_on: tuple[type[BaseException], ...] = (),
    max_retries: int = 8,
    backoff: int = 2,
    backoff_max: int = RETRY_BACKOFF_MAX,
    ignore_result: bool = True,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a ChatLink task with the shared policy: its result is ignored (unless a caller
    waits for it, as ``ping`` does), and the errors a
    later attempt can fix (``retry_on``, plus a lost database connection, always) are retried
    with exponential backoff (``backoff`` seconds, doubling, capped at ``backoff_max``) and full
    jitter, at most ``max_retries`` times. Anything else is final for this message; the beat
    sweep finds what is left undone in the database. The task's name is its module and function
    (``tasks.call_endings.end_call``), and it is enqueued by reference, never by that string
    (``app.queue.enqueue_after_commit(session, end_call, call_id)``)."""

    def declare(function: Callable[P, R]) -> Task[P, R]:
        return shared_task(
            ignore_result=ignore_result,
            autoretry_for=(*retry_on, OperationalError),
            retry_backoff=backoff,
            retry_backoff_max=backoff_max,
            retry_jitter=True,
            max_retries=max_retries,
        )(function)

    return declare


def celery_init_app(app: Flask, settings: Settings) -> Celery[Any]:
    class ChatLinkTask(Task[Any, Any]):
        """Runs inside the Flask app context (tasks open their unit of work with
        ``db.session_scope()``: commit on success, rollback on error)."""

        def __call__(self, *args: object, **kwargs: object) -> object:
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    broker = celery_broker_url(settings.redis_url or "")
    transport_options = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
    celery = Celery(app.name, task_cls=ChatLinkTask)
    celery.conf.update(
        broker_url=broker,
        result_backend=broker,
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=3600,
        task_ignore_result=True,
        timezone="UTC",
        enable_utc=True,
        # Publishing must not hang a web request when Redis is down: fail fast, the sweep recovers.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        worker_hijack_root_logger=False,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    # Register every task, in the web process too, so both kinds of process know the same tasks.
    from tasks import TASK_MODULES

    for module in TASK_MODULES:
        importlib.import_module(module)
    from tasks.automatic_payouts import run_automatic_payouts
    from tasks.daily_events import poll_daily_presence
    from tasks.maintenance import sweep, sweep_full_history

    celery.conf.beat_schedule = {
        "sweep": {"task": sweep.name, "schedule": float(settings.sweep_interval_seconds)},
        # Weekly automatic payouts: checked hourly, paid once per seller and ISO week.
        "automatic-payouts": {"task": run_automatic_payouts.name, "schedule": 3600.0},
        # The same follow-ups as the sweep, over all of history (the sweep looks a few days back).
        "sweep-full-history": {"task": sweep_full_history.name, "schedule": 3600.0},
    }
    if settings.daily_api_key and not settings.daily_webhook_secret:
        # Without Daily's webhooks, its presence says who is in the rooms; Daily asks that it be
        # read no more often than every 15 seconds.
        celery.conf.beat_schedule["daily-presence"] = {"task": poll_daily_presence.name, "schedule": 15.0}
    return celery


def celery_app() -> Celery[Any]:
    celery: Celery[Any] = current_app.extensions["celery"]
    return celery

"""Periodic work run by beat: the heartbeat, and the sweep that backs up every time-critical job."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence

from app.celery_app import chatlink_task
from app.config import Settings
from app.db import db, utcnow
from app.extensions import redis_client
from app.services import (
    call_endings,
    daily_events,
    email_delivery,
    health,
    photos,
    privacy,
    problems,
    request_payments,
    stripe_events,
    transfers,
)
from app.services.lifecycle import clock, decisions, schedule
from app.services.sweeping import Question, SweepStep
from tasks import _runtime, builtin_payments

log = logging.getLogger(__name__)

# Each step finds work that a lost message or a dead worker left undone and does it (or
# re-enqueues it). Every step is idempotent and runs in its own transaction, so one failing step
# does not hold back the others, and two beats running at once are harmless. A sweep runs only
# the steps its first query finds something for (``app.services.sweeping``).
SWEEP_STEPS: tuple[SweepStep, ...] = (
    # Ending overdue calls comes first: it is the step the product's promise depends on.
    clock.end_overdue_calls,
    clock.apply_no_shows,
    call_endings.recover_call_work,
    email_delivery.requeue_due_emails,
    decisions.expire_pending_requests,
    schedule.send_due_reminders,
    request_payments.payment_followups,
    stripe_events.requeue_stuck_events,
    daily_events.requeue_stuck_events,
    problems.recover_problem_refunds,
    transfers.resend_stuck_transfers,
    builtin_payments.expire_builtin_checkouts,
    privacy.scrub_farewell_emails,
    photos.requeue_photo_deletions,
)


SWEEP_QUESTION = Question(SWEEP_STEPS)

# The sweep's steps look a few days back to stay cheap on a long history; these look at all of it,
# once an hour, so work older than that is still finished, never forgotten.
FULL_HISTORY_STEPS: tuple[SweepStep, ...] = (
    request_payments.payment_followups_all_history,
    call_endings.recover_call_work_all_history,
)


# No retries: the next beat runs the sweep again in a few seconds.
@chatlink_task(max_retries=0)
def sweep() -> dict[str, int]:
    settings = _runtime.settings()
    health.record_heartbeat(redis_client(), settings.celery_queue)
    due, report = _ask(SWEEP_QUESTION)
    report.update(_run(due, settings))
    # Every 5 seconds: log the sweep only when it found something (the pending counts are gauges).
    found = any(count for name, count in report.items() if not name.endswith("_pending"))
    log.log(logging.INFO if found else logging.DEBUG, "sweep", extra=report)
    return report


@chatlink_task(max_retries=0)
def sweep_full_history() -> dict[str, int]:
    report = _run(FULL_HISTORY_STEPS, _runtime.settings())
    log.info("full-history sweep", extra=report)
    return report


def _ask(question: Question) -> tuple[Sequence[SweepStep], dict[str, int]]:
    """The steps with something to do, and the gauges; every step if the question fails (it is
    only a shortcut: each step still finds its own work)."""
    try:
        with db.session_scope() as session:
            return question.ask(session, utcnow())
    except Exception:
        log.exception("sweep question failed")
        return question.steps, {}


def _run(steps: Sequence[SweepStep], settings: Settings) -> dict[str, int]:
    report: dict[str, int] = {}
    for step in steps:
        try:
            with db.session_scope() as session:
                report.update(step(session, utcnow(), settings))
        except Exception:
            log.exception("sweep step failed", extra={"step": step.__name__})
    return report


@chatlink_task(max_retries=0, ignore_result=False)
def ping() -> dict[str, object]:
    """Answer from a worker: ``flask chatlink ping-worker`` uses it to prove the queue works."""
    return {"pong": True, "at": time.time(), "host": socket.gethostname()}

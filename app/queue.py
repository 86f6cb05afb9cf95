"""Publishing tasks after commit, for services (which must not import Flask or the tasks).

A service calls ``enqueue_after_commit(session, "tasks.calls.end_call", call_id)``; the task is
published by name once the transaction commits. If the broker is down at that moment the data
is still committed, and the beat sweep finds the row and enqueues it again: nothing is lost.
"""

from __future__ import annotations

import logging

from celery import current_app as current_celery
from sqlalchemy.orm import Session

from app.db import on_commit, on_commit_collect

log = logging.getLogger(__name__)


def enqueue_after_commit(session: Session, task_name: str, *args: object, **options: object) -> None:
    def publish() -> None:
        enqueue_now(task_name, *args, **options)

    on_commit(session, publish)


def enqueue_batch_after_commit(session: Session, task_name: str, arg: str) -> None:
    """Like ``enqueue_after_commit``, for a task that takes any number of ids: every ``arg`` queued
    for ``task_name`` in one transaction travels in one message, ``task(*args)``. A paid request
    queues two emails; they cost one message and one task run, not two."""
    on_commit_collect(session, task_name, arg, lambda args: enqueue_now(task_name, *args))


def enqueue_now(task_name: str, *args: object, **options: object) -> bool:
    """Publish at once (the sweep uses this for rows it recovers). False if the broker refused."""
    try:
        current_celery.tasks[task_name].apply_async(args, **options)
        return True
    except Exception:
        log.warning("could not enqueue task; the sweep will retry", extra={"task": task_name})
        return False

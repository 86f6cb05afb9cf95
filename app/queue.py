"""Publishing tasks after commit, for services (which must not import Flask).

A service calls ``enqueue_after_commit(session, call_tasks.end_call, call_id)``: the task is named
by reference (a renamed or missing task fails at import and in mypy, not in production) and
published once the transaction commits. If the broker is down at that moment the data is still
committed, and the beat sweep finds the row and enqueues it again: nothing is lost.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import Task
from sqlalchemy.orm import Session

from app.db import on_commit, on_commit_collect

log = logging.getLogger(__name__)

AnyTask = Task[..., Any]


class RetryLater(Exception):
    """A vendor or the network failed in a way a later attempt may fix (a timeout, 429, 5xx):
    the task that met it retries with backoff (``app.celery_app.chatlink_task``)."""


def enqueue_after_commit(session: Session, task: AnyTask, *args: object, eta: datetime | None = None) -> None:
    def publish() -> None:
        enqueue_now(task, *args, eta=eta)

    on_commit(session, publish)


def enqueue_batch_after_commit(session: Session, task: AnyTask, arg: str) -> None:
    """Like ``enqueue_after_commit``, for a task that takes any number of ids: every ``arg`` queued
    for ``task`` in one transaction travels in one message, ``task(*args)``. A paid request
    queues two emails; they cost one message and one task run, not two."""
    on_commit_collect(session, task.name, arg, lambda args: enqueue_now(task, *args))


def enqueue_now(task: AnyTask, *args: object, eta: datetime | None = None) -> bool:
    """Publish at once (the sweep uses this for rows it recovers). False if the broker refused."""
    try:
        if eta is None:
            task.apply_async(args)
        else:
            task.apply_async(args, eta=eta)
        return True
    except Exception:
        log.warning("could not enqueue task; the sweep will retry", extra={"task": task.name})
        return False

"""Problem reports (``app.services.problems``): the refund an admin granted, at the gateway.

Repeat-safe: one idempotency key per case (``refund:problem:<case id>``) and the case's
``refund_done_at`` recorded once; the sweep re-publishes a refund whose message was lost.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.queue import RetryLater
from tasks import _runtime


@chatlink_task(retry_on=(RetryLater,), max_retries=10, backoff=2)
def refund_problem(case_id: str) -> str:
    from app.services import problems

    gateway = _runtime.payments()
    with db.session_scope() as session:
        return problems.pay_problem_refund(session, uuid.UUID(case_id), gateway=gateway, now=utcnow())

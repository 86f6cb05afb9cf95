"""The beat's sweep: the one question it starts with, and the gauges it reports.

The beat sweeps every few seconds (``tasks.maintenance``) and nearly always finds nothing to do.
Instead of each of its steps opening a transaction to find nothing, the sweep first asks one
query, built once: which steps have any row to look at, and how much work waits in the inbox and
the outbox. Only the steps with something to look at run.

A step names its question with ``@looks_for(probe)``. The probe is an EXISTS built from the same
conditions the step selects its rows by, called with the bound ``NOW`` instead of the step's
``now``, so the two cannot drift apart. It may be broader than the step (which then finds nothing,
as it would have), never narrower. A step without a probe runs every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, DateTime, Select, bindparam, func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import EmailStatus, OutboxEmail, StripeEvent, StripeEventStatus

SweepStep = Callable[[Session, datetime, Settings], dict[str, int]]
# A step's conditions take the moment as a value (the step) or as the probe's bound parameter.
Moment = datetime | ColumnElement[datetime]
Probe = Callable[[ColumnElement[datetime]], ColumnElement[bool]]

NOW: ColumnElement[datetime] = bindparam("now", type_=DateTime(timezone=True))

# Reported by every sweep, for its log line: work waiting in the inbox and the outbox.
PENDING: dict[str, ColumnElement[int]] = {
    "inbox_pending": select(func.count())
    .select_from(StripeEvent)
    .where(StripeEvent.status == StripeEventStatus.RECEIVED)
    .scalar_subquery(),
    "outbox_pending": select(func.count())
    .select_from(OutboxEmail)
    .where(OutboxEmail.status == EmailStatus.PENDING)
    .scalar_subquery(),
}

_PROBES: dict[SweepStep, Probe] = {}

Step = TypeVar("Step", bound=SweepStep)


def looks_for(probe: Probe) -> Callable[[Step], Step]:
    """Register ``probe`` as the question that tells whether the decorated step has work."""

    def register(step: Step) -> Step:
        _PROBES[step] = probe
        return step

    return register


class Question:
    """The query a sweep of ``steps`` starts with: one column per probed step, then the gauges."""

    def __init__(self, steps: Sequence[SweepStep]) -> None:
        self.steps = tuple(steps)
        self.probed = [step for step in self.steps if step in _PROBES]
        self.statement: Select[Any] = select(
            *(_PROBES[step](NOW).label(f"step_{index}") for index, step in enumerate(self.probed)),
            *(count.label(name) for name, count in PENDING.items()),
        )

    def ask(self, session: Session, now: datetime) -> tuple[list[SweepStep], dict[str, int]]:
        """The steps with something to look at (in their order; the unprobed ones always) and the
        gauges."""
        row = session.execute(self.statement, {"now": now}).one()
        found = dict(zip(self.probed, row[: len(self.probed)], strict=True))
        due = [step for step in self.steps if found.get(step, True)]
        return due, {name: int(row._mapping[name]) for name in PENDING}

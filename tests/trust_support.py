"""Shared by the block, report, rating, admin and privacy tests: calls in their finished states,
CSRF tokens from pages, and a search of every text column of every table for a string."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

import pytest
from sqlalchemy import JSON, Enum, String, Text, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.db import Base, utcnow
from app.models import CallRequest, CancelReason, PaymentState, Profile, RequestStatus, User
from app.services.calls import join_token
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory

SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"  # tests/conftest.py's settings


def finished_call(
    *,
    seller: User | None = None,
    buyer_email: str | None = None,
    status: RequestStatus = RequestStatus.COMPLETED,
    cancel_reason: CancelReason | None = None,
    ended_at: datetime | None = None,
    gross_cents: int = 1000,
    fee_cents: int = 200,
) -> CallRequest:
    """A call as the call's code leaves it: accepted (so both join tokens exist), then
    COMPLETED, or CANCELLED for ``cancel_reason``, or still ACCEPTED / PENDING."""
    ended = ended_at or utcnow() - timedelta(minutes=1)
    seller = seller or ProfileFactory().user
    extra = {"buyer_email": buyer_email} if buyer_email else {}
    transaction = TransactionFactory(
        seller=seller,
        payment_state=PaymentState.CAPTURED,
        gross_cents=gross_cents,
        platform_fee_cents=fee_cents,
        net_cents=gross_cents - fee_cents,
        **extra,
    )
    values: dict[str, object] = {"status": status, "transaction": transaction}
    if status != RequestStatus.PENDING:
        values |= {"accepted_at": ended - timedelta(minutes=10), "join_key": secrets.token_urlsafe(32)}
    if status == RequestStatus.COMPLETED:
        values |= {"started_at": ended - timedelta(minutes=5), "ends_at": ended, "ended_at": ended}
    if status == RequestStatus.CANCELLED:
        values |= {"cancel_reason": cancel_reason or CancelReason.BUYER_NO_SHOW, "cancelled_at": ended}
    call = CallRequestFactory(**values)
    CallRequestFactory._meta.sqlalchemy_session_factory().flush()
    return call


def buyer_token(call: CallRequest) -> str:
    return join_token(SECRET_KEY, call, "buyer")


def seller_token(call: CallRequest) -> str:
    return join_token(SECRET_KEY, call, "seller")


def hidden_value(html: str, name: str) -> str:
    """The value of the first ``<input name=NAME>`` on a page, whatever the attribute order."""
    for tag in re.findall(r"<input\b[^>]*>", html):
        if re.search(rf'\bname="{re.escape(name)}"', tag):
            value = re.search(r'\bvalue="([^"]*)"', tag)
            assert value, f"the {name} input has no value"
            return value.group(1)
    raise AssertionError(f"no {name} input on the page")


def page_csrf(html: str) -> str:
    """The CSRF token of the first form on a page."""
    return hidden_value(html, "csrf_token")


def text_columns() -> list[tuple[str, str]]:
    """Every (table, column) that can hold text: strings, texts and JSON, enums included."""
    found = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, String | Text | JSON | JSONB | Enum):
                found.append((table.name, column.name))
    return found


def where_is(session: Session, needle: str) -> dict[str, int]:
    """``{"table.column": rows}`` for every text column holding ``needle`` (any case). Independent
    of the code under test: a plain ILIKE over each column cast to text."""
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    hits: dict[str, int] = {}
    for table_name, column_name in text_columns():
        column = Base.metadata.tables[table_name].c[column_name]
        statement = select(column).where(column.cast(Text).ilike(pattern))
        rows = len(session.execute(statement).all())
        if rows:
            hits[f"{table_name}.{column_name}"] = rows
    return hits


def profile_of(session: Session, user: User) -> Profile | None:
    return session.scalar(select(Profile).where(Profile.user_id == user.id))


@pytest.fixture(autouse=True)
def fresh_rate_limits(redis, settings):  # type: ignore[no-untyped-def]
    """Empty this run's rate-limit counters around every test that imports this fixture (the
    ``limits`` package keeps them under its own ``LIMITS:LIMITER/`` prefix)."""

    def clear() -> None:
        for pattern in (f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*",):
            for key in redis.scan_iter(pattern):
                redis.delete(key)

    clear()
    yield
    clear()

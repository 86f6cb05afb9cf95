"""The ledger: sums, pending money, idempotent earnings, recent rows and the CSV rows."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.db import utcnow
from app.models import (
    CallRequest,
    CancelReason,
    LedgerEntry,
    LedgerKind,
    PaymentState,
    PayoutRequest,
    RequestStatus,
    User,
)
from app.services import ledger
from tests.factories import CallRequestFactory, ProfileFactory, UserFactory


def call(seller: User, *, net: int = 800, status: RequestStatus = RequestStatus.COMPLETED, **tx) -> CallRequest:  # type: ignore[no-untyped-def]
    extra = {"cancel_reason": CancelReason.BUYER_NO_SHOW} if status == RequestStatus.CANCELLED else {}
    return CallRequestFactory(
        transaction__seller=seller,
        transaction__gross_cents=net + 200,
        transaction__platform_fee_cents=200,
        transaction__net_cents=net,
        status=status,
        **{f"transaction__{key}": value for key, value in tx.items()},
        **extra,
    )


def entry(
    session,
    seller: User,
    kind: LedgerKind,
    amount: int,
    *,
    at: datetime | None = None,
    memo: str = "",
    currency: str = "usd",
) -> LedgerEntry:  # type: ignore[no-untyped-def]
    payout_id = None
    if kind != LedgerKind.EARNING:
        payout = PayoutRequest(seller_id=seller.id, amount_cents=abs(amount), currency=currency)
        session.add(payout)
        session.flush()
        payout_id = payout.id
    row = LedgerEntry(
        seller_id=seller.id,
        kind=kind,
        amount_cents=amount,
        currency=currency,
        payout_request_id=payout_id,
        memo=memo,
        created_at=at or utcnow(),
    )
    session.add(row)
    session.flush()
    return row


class TestBalance:
    def test_empty_ledger_is_zero(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        assert ledger.get_balance(db_session, seller.id, currency="usd") == ledger.Balance(0, 0, "usd")

    def test_sums_earnings_payouts_and_reversals(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        for net in (800, 1200, 1500):
            ledger.record_earning(db_session, call(seller, net=net), now=utcnow())
        entry(db_session, seller, LedgerKind.PAYOUT, -2000)
        entry(db_session, seller, LedgerKind.PAYOUT, -1000)
        entry(db_session, seller, LedgerKind.REVERSAL, 1000)  # the second payout was rejected
        entry(db_session, seller, LedgerKind.REVERSAL, -300)  # a lost dispute

        assert ledger.available_cents(db_session, seller.id, "usd") == 800 + 1200 + 1500 - 2000 - 1000 + 1000 - 300

    def test_other_sellers_and_currencies_do_not_count(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller, other = UserFactory(), UserFactory()
        ledger.record_earning(db_session, call(seller, net=800), now=utcnow())
        ledger.record_earning(db_session, call(other, net=5000), now=utcnow())
        entry(db_session, seller, LedgerKind.REVERSAL, 700, currency="eur")

        assert ledger.available_cents(db_session, seller.id, "usd") == 800
        assert ledger.available_cents(db_session, seller.id, "eur") == 700

    def test_pending_is_the_net_of_paid_calls_not_yet_completed(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        call(seller, net=800, status=RequestStatus.PENDING, payment_state=PaymentState.HELD)
        call(seller, net=1600, status=RequestStatus.ACCEPTED, payment_state=PaymentState.CAPTURED)
        # None of these is money the seller is waiting for:
        call(seller, net=111, status=RequestStatus.PENDING, payment_state=PaymentState.VOIDED)
        call(seller, net=222, status=RequestStatus.DECLINED, payment_state=PaymentState.VOIDED)
        call(seller, net=333, status=RequestStatus.COMPLETED, payment_state=PaymentState.CAPTURED)
        call(seller, net=444, status=RequestStatus.ACCEPTED, payment_state=PaymentState.REFUNDED)
        call(UserFactory(), net=555, status=RequestStatus.PENDING, payment_state=PaymentState.HELD)

        balance = ledger.get_balance(db_session, seller.id, currency="usd")
        assert balance.pending_cents == 800 + 1600
        assert balance.available_cents == 0
        assert balance.as_json() == {"availableCents": 0, "pendingCents": 2400, "currency": "usd"}

    def test_seller_currency_comes_from_the_profile(self, db_session) -> None:  # type: ignore[no-untyped-def]
        profile = ProfileFactory(currency="eur")
        assert ledger.seller_currency(db_session, profile.user_id, default="usd") == "eur"
        assert ledger.seller_currency(db_session, UserFactory().id, default="usd") == "usd"


class TestRecordEarning:
    def test_records_the_net_once(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        completed = call(seller, net=850)
        now = utcnow()

        assert ledger.record_earning(db_session, completed, now=now) is True
        assert ledger.record_earning(db_session, completed, now=now) is False

        rows = db_session.scalars(select(LedgerEntry).where(LedgerEntry.call_request_id == completed.id)).all()
        assert [(r.kind, r.amount_cents, r.currency, r.seller_id) for r in rows] == [
            (LedgerKind.EARNING, 850, "usd", seller.id)
        ]
        assert rows[0].memo == "Call completed"

    def test_buyer_no_show_earns_with_its_own_memo(self, db_session) -> None:  # type: ignore[no-untyped-def]
        no_show = call(UserFactory(), net=800, status=RequestStatus.CANCELLED)
        ledger.record_earning(db_session, no_show, now=utcnow())
        row = db_session.scalar(select(LedgerEntry).where(LedgerEntry.call_request_id == no_show.id))
        assert row.memo == "Call paid, buyer did not show up"

    def test_zero_share_records_nothing(self, db_session) -> None:  # type: ignore[no-untyped-def]
        free = CallRequestFactory(
            transaction__gross_cents=100, transaction__platform_fee_cents=100, transaction__net_cents=0
        )
        assert ledger.record_earning(db_session, free, now=utcnow()) is False
        assert db_session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


class TestRecentEntries:
    def test_newest_first_and_limited(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        start = utcnow() - timedelta(days=10)
        for day in range(5):
            entry(db_session, seller, LedgerKind.REVERSAL, 100 + day, at=start + timedelta(days=day))
        entry(db_session, UserFactory(), LedgerKind.REVERSAL, 999)

        rows = ledger.recent_entries(db_session, seller.id, limit=3)
        assert [r.amount_cents for r in rows] == [104, 103, 102]


class TestCsvRows:
    def test_seller_export_has_a_header_and_only_their_rows_oldest_first(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        completed = call(seller, net=800)
        ledger.record_earning(db_session, completed, now=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        payout = entry(db_session, seller, LedgerKind.PAYOUT, -500, at=datetime(2026, 3, 2, 8, 30, tzinfo=UTC))
        entry(db_session, UserFactory(), LedgerKind.REVERSAL, 999)

        rows = list(ledger.csv_rows(db_session, seller_id=seller.id))

        assert rows[0] == list(ledger.SELLER_CSV_COLUMNS)
        assert len(rows) == 3
        earning_row, payout_row = rows[1], rows[2]
        assert earning_row[0] == "2026-03-01T12:00:00Z"
        assert earning_row[2:5] == ["earning", 800, "usd"]
        assert earning_row[5] == str(completed.id)
        assert payout_row[2:5] == ["payout", -500, "usd"]
        assert payout_row[6] == str(payout.payout_request_id)
        assert all(isinstance(row[3], int) for row in rows[1:])

    def test_admin_export_has_everyone_with_seller_columns(self, db_session) -> None:  # type: ignore[no-untyped-def]
        first, second = UserFactory(email="first@example.com"), UserFactory(email="second@example.com")
        entry(db_session, first, LedgerKind.REVERSAL, 100, at=datetime(2026, 1, 1, tzinfo=UTC))
        entry(db_session, second, LedgerKind.REVERSAL, 200, at=datetime(2026, 1, 2, tzinfo=UTC))

        rows = list(ledger.csv_rows(db_session))

        assert rows[0] == list(ledger.ADMIN_CSV_COLUMNS)
        assert [(r[2], r[3], r[5]) for r in rows[1:]] == [
            (str(first.id), "first@example.com", 100),
            (str(second.id), "second@example.com", 200),
        ]

    def test_date_filters_are_whole_utc_days_both_included(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        moments = [
            datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 3, 5, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 6, 0, 0, tzinfo=UTC),
        ]
        for index, moment in enumerate(moments, start=1):
            entry(db_session, seller, LedgerKind.REVERSAL, index, at=moment)

        def amounts(**filters: date) -> list[object]:
            return [row[3] for row in list(ledger.csv_rows(db_session, seller_id=seller.id, **filters))[1:]]

        assert amounts(start=date(2026, 3, 1), end=date(2026, 3, 5)) == [2, 3]
        assert amounts(start=date(2026, 3, 1)) == [2, 3, 4]
        assert amounts(end=date(2026, 2, 28)) == [1]
        assert amounts() == [1, 2, 3, 4]

    def test_formula_cells_are_defused(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory(email="=cmd@example.com")
        entry(db_session, seller, LedgerKind.REVERSAL, -300, memo='=HYPERLINK("http://evil")')
        entry(db_session, seller, LedgerKind.REVERSAL, 300, memo="@SUM(A1)")

        rows = list(ledger.csv_rows(db_session))[1:]

        assert [row[3] for row in rows] == ["'=cmd@example.com", "'=cmd@example.com"]
        assert [row[9] for row in rows] == ['\'=HYPERLINK("http://evil")', "'@SUM(A1)"]
        assert sorted(row[5] for row in rows) == [-300, 300]  # amounts stay numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
        (-1500, -1500),
        (uuid.UUID(int=0), uuid.UUID(int=0)),
    ],
)
def test_safe_cell(value: object, expected: object) -> None:
    assert ledger.safe_cell(value) == expected

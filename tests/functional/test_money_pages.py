"""The seller's balance page, the payout form and the ledger CSV download."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import LedgerEntry, LedgerKind, PayoutRequest, PayoutStatus, RequestStatus
from app.services import ledger
from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory, UserFactory


def earn(session, seller, amount: int, *, at: datetime | None = None):  # type: ignore[no-untyped-def]
    call = CallRequestFactory(
        transaction__seller=seller,
        transaction__gross_cents=amount + 100,
        transaction__platform_fee_cents=100,
        transaction__net_cents=amount,
        status=RequestStatus.COMPLETED,
    )
    ledger.record_earning(session, call, now=at or utcnow())
    return call


def read_csv(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory().user


class TestBalancePage:
    def test_anonymous_is_sent_to_log_in(self, client) -> None:  # type: ignore[no-untyped-def]
        response = client.get("/balance")
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]

    def test_shows_the_balance_the_rows_and_the_form(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 2550)
        login(client, seller)

        html = client.get("/balance").get_data(as_text=True)

        assert 'data-balance="available">$25.50<' in html
        assert 'data-balance="pending">$0.00<' in html
        assert "+$25.50" in html and "Call completed" in html
        assert 'action="/payouts/request"' in html and 'name="csrf_token"' in html
        assert 'max="25.50"' in html and 'min="10.00"' in html
        assert 'href="/ledger.csv"' in html
        assert "style=" not in html and "<script>" not in html  # the CSP forbids both

    def test_no_form_below_the_minimum(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 900)
        login(client, seller)
        html = client.get("/balance").get_data(as_text=True)
        assert 'action="/payouts/request"' not in html
        assert "once at least $10.00 is available" in html

    def test_lists_payouts_with_their_outcome(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        db_session.add_all(
            [
                PayoutRequest(seller_id=seller.id, amount_cents=1500, currency="usd", status=PayoutStatus.REQUESTED),
                PayoutRequest(
                    seller_id=seller.id,
                    amount_cents=2000,
                    currency="usd",
                    status=PayoutStatus.REJECTED,
                    reject_reason="Wrong IBAN",
                ),
            ]
        )
        db_session.flush()
        login(client, seller)
        html = client.get("/balance").get_data(as_text=True)
        assert "Requested</span>" in html and "Rejected</span>" in html and "Wrong IBAN" in html


class TestPayoutForm:
    def post(self, client, amount: str, next_page: str = "/balance"):  # type: ignore[no-untyped-def]
        token = csrf_token(client)
        return client.post("/payouts/request", data={"csrf_token": token, "amount": amount, "next": next_page})

    def test_requests_the_amount_in_cents_and_returns(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        login(client, seller)

        response = self.post(client, "25.50", "/dashboard")

        assert response.status_code == 303 and response.headers["Location"] == "/dashboard"
        payout = db_session.scalar(select(PayoutRequest).where(PayoutRequest.seller_id == seller.id))
        assert payout.amount_cents == 2550
        assert "Payout of $25.50 requested." in client.get("/balance").get_data(as_text=True)

    @pytest.mark.parametrize(
        ("amount", "message"),
        [
            ("5", "The smallest payout is $10."),
            ("31", "You can request at most $30."),
            ("10.555", "Use at most two decimal places."),
            ("abc", "Not a valid decimal value."),
            ("NaN", "Enter an amount like 25.00."),
            ("-20", "Enter a positive amount."),
        ],
    )
    def test_refusals_are_flashed(self, client, db_session, seller, amount: str, message: str) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        login(client, seller)

        response = self.post(client, amount)

        assert response.status_code == 303
        assert message in client.get("/balance").get_data(as_text=True)
        assert db_session.scalar(select(PayoutRequest)) is None

    def test_never_redirects_off_site(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        login(client, seller)
        response = self.post(client, "10", "//evil.example/x")
        assert response.headers["Location"] == "/balance"

    def test_needs_the_csrf_token(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        login(client, seller)
        response = client.post("/payouts/request", data={"amount": "10"})
        assert response.status_code in (302, 303, 400)
        assert db_session.scalar(select(PayoutRequest)) is None


class TestSellerCsv:
    def test_anonymous_is_sent_to_log_in(self, client) -> None:  # type: ignore[no-untyped-def]
        response = client.get("/ledger.csv")
        assert response.status_code == 302 and "/login" in response.headers["Location"]

    def test_header_rows_and_cents(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        call = earn(db_session, seller, 1250, at=datetime(2026, 4, 2, 9, 0, tzinfo=UTC))
        earn(db_session, UserFactory(), 9999)
        login(client, seller)

        response = client.get("/ledger.csv")

        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith('attachment; filename="chatlink-ledger-')
        rows = read_csv(response)
        assert rows[0] == list(ledger.SELLER_CSV_COLUMNS)
        assert rows[1:] == [
            [
                "2026-04-02T09:00:00Z",
                rows[1][1],
                "earning",
                "1250",
                "usd",
                str(call.id),
                "",
                "Call completed",
            ]
        ]

    def test_date_filters(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        for day, amount in ((1, 1001), (2, 1002), (3, 1003)):
            earn(db_session, seller, amount, at=datetime(2026, 5, day, 12, tzinfo=UTC))
        login(client, seller)

        response = client.get("/ledger.csv?from=2026-05-02&to=2026-05-02")

        assert [row[3] for row in read_csv(response)[1:]] == ["1002"]
        assert 'filename="chatlink-ledger-2026-05-02-2026-05-02.csv"' in response.headers["Content-Disposition"]
        assert [row[3] for row in read_csv(client.get("/ledger.csv?from=2026-05-02"))[1:]] == ["1002", "1003"]

    @pytest.mark.parametrize(
        "query", ["from=yesterday", "to=2026-13-01", "from=2026-05-03&to=2026-05-01", "from=20260501"]
    )
    def test_bad_dates_are_400(self, client, seller, query: str) -> None:  # type: ignore[no-untyped-def]
        login(client, seller)
        assert client.get(f"/ledger.csv?{query}").status_code == 400

    def test_formula_cells_are_defused(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        payout = PayoutRequest(seller_id=seller.id, amount_cents=1000, currency="usd")
        db_session.add(payout)
        db_session.flush()
        db_session.add(
            LedgerEntry(
                seller_id=seller.id,
                kind=LedgerKind.REVERSAL,
                amount_cents=-1000,
                currency="usd",
                payout_request_id=payout.id,
                memo="=1+2",
            )
        )
        db_session.flush()
        login(client, seller)

        [row] = read_csv(client.get("/ledger.csv"))[1:]

        assert row[7] == "'=1+2"
        assert row[3] == "-1000"  # an amount stays a plain number
        assert not re.search(r"(^|,)[=+@]", client.get("/ledger.csv").get_data(as_text=True))

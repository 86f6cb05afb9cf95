"""The seller's money API: GET /api/balance, POST /api/payouts/request, GET /api/payouts."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import LedgerEntry, LedgerKind, PaymentState, PayoutRequest, RequestStatus
from app.services import ledger
from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory, UserFactory


def earn(session, seller, *amounts: int) -> None:  # type: ignore[no-untyped-def]
    for amount in amounts:
        call = CallRequestFactory(
            transaction__seller=seller,
            transaction__gross_cents=amount + 100,
            transaction__platform_fee_cents=100,
            transaction__net_cents=amount,
            status=RequestStatus.COMPLETED,
        )
        ledger.record_earning(session, call, now=utcnow())


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory().user


@pytest.fixture
def post(client, seller):  # type: ignore[no-untyped-def]
    login(client, seller)
    token = csrf_token(client)

    def send(body: object, path: str = "/api/payouts/request"):  # type: ignore[no-untyped-def]
        return client.post(path, json=body, headers={"X-CSRFToken": token})

    return send


class TestBalance:
    def test_needs_login(self, client) -> None:  # type: ignore[no-untyped-def]
        response = client.get("/api/balance")
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"

    def test_available_and_pending(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 800, 1200)
        CallRequestFactory(
            transaction__seller=seller,
            transaction__gross_cents=2500,
            transaction__platform_fee_cents=500,
            transaction__net_cents=2000,
            transaction__payment_state=PaymentState.HELD,
        )
        login(client, seller)

        response = client.get("/api/balance")

        assert response.status_code == 200
        assert response.get_json() == {"availableCents": 2000, "pendingCents": 2000, "currency": "usd"}

    def test_currency_follows_the_profile(self, client, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory(currency="eur").user
        login(client, seller)
        assert client.get("/api/balance").get_json() == {"availableCents": 0, "pendingCents": 0, "currency": "eur"}


class TestRequestPayout:
    def test_201_with_the_payout_and_the_money_leaves_the_balance(self, client, post, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)

        response = post({"amountCents": 2500})

        assert response.status_code == 201
        body = response.get_json()["payout"]
        assert (body["status"], body["amountCents"], body["currency"]) == ("REQUESTED", 2500, "usd")
        assert body["reference"] is None and body["rejectReason"] is None and body["processedAt"] is None
        assert body["createdAt"].endswith("Z")
        assert db_session.get(PayoutRequest, uuid.UUID(body["id"])).seller_id == seller.id
        assert client.get("/api/balance").get_json()["availableCents"] == 500
        rows = db_session.scalars(select(LedgerEntry.kind).where(LedgerEntry.seller_id == seller.id)).all()
        assert sorted(rows) == sorted([LedgerKind.EARNING, LedgerKind.PAYOUT])

    def test_below_the_minimum_is_422(self, post, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        response = post({"amountCents": 999})
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "amount_too_small" and "amountCents" in error["fields"]

    def test_more_than_available_is_422(self, post, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 1500)
        response = post({"amountCents": 1600})
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "insufficient_balance"
        assert db_session.scalar(select(PayoutRequest)) is None

    @pytest.mark.parametrize("amount", ["2500", 25.0, True, None, [2500]])
    def test_amount_must_be_whole_cents(self, post, db_session, seller, amount: object) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        response = post({"amountCents": amount})
        assert response.status_code == 422
        assert "amountCents" in response.get_json()["error"]["fields"]

    @pytest.mark.parametrize("body", [[1], "x", None])
    def test_body_must_be_an_object(self, post, body: object) -> None:  # type: ignore[no-untyped-def]
        assert post(body).status_code == 400

    def test_needs_login(self, client) -> None:  # type: ignore[no-untyped-def]
        token = csrf_token(client)
        response = client.post("/api/payouts/request", json={"amountCents": 1000}, headers={"X-CSRFToken": token})
        assert response.status_code == 401

    def test_needs_the_csrf_header(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 3000)
        login(client, seller)
        response = client.post("/api/payouts/request", json={"amountCents": 1000})
        assert response.status_code == 400
        assert db_session.scalar(select(PayoutRequest)) is None


class TestListPayouts:
    def test_newest_first_and_only_mine(self, client, post, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        earn(db_session, seller, 5000)
        other = UserFactory()
        earn(db_session, other, 5000)
        db_session.add(PayoutRequest(seller_id=other.id, amount_cents=1000, currency="usd"))
        db_session.flush()
        first = post({"amountCents": 1000}).get_json()["payout"]["id"]
        second = post({"amountCents": 2000}).get_json()["payout"]["id"]

        body = client.get("/api/payouts").get_json()

        assert [p["id"] for p in body["payouts"]] == [second, first]

"""The admin's payouts queue, its JSON twin and everyone's ledger CSV: ADMIN only."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import EventLog, LedgerEntry, LedgerKind, OutboxEmail, PayoutRequest, PayoutStatus, RequestStatus
from app.services import ledger, payouts
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, CallRequestFactory, ProfileFactory

ANY_ID = "00000000-0000-0000-0000-000000000001"
PAGES = [
    ("GET", "/admin/payouts"),
    ("GET", "/admin/ledger.csv"),
    ("POST", f"/admin/payouts/{ANY_ID}/process"),
    ("POST", f"/admin/payouts/{ANY_ID}/reject"),
]
APIS = [
    ("GET", "/api/admin/payouts"),
    ("POST", f"/api/admin/payouts/{ANY_ID}/process"),
]


def requested_payout(session, amount: int = 2500, *, email: str | None = None, at: datetime | None = None):  # type: ignore[no-untyped-def]
    profile = ProfileFactory(**({"user__email": email} if email else {}))
    call = CallRequestFactory(
        transaction__seller=profile.user,
        transaction__gross_cents=amount + 100,
        transaction__platform_fee_cents=100,
        transaction__net_cents=amount,
        status=RequestStatus.COMPLETED,
    )
    at = at or utcnow()
    ledger.record_earning(session, call, now=at)
    payout = payouts.request_payout(session, profile.user_id, amount, currency="usd", now=at + timedelta(minutes=1))
    session.flush()
    return payout


def send(client, method: str, path: str, token: str):  # type: ignore[no-untyped-def]
    if method == "GET":
        return client.get(path)
    if path.startswith("/api/"):
        return client.post(path, json={"action": "process", "reference": "x"}, headers={"X-CSRFToken": token})
    return client.post(path, data={"csrf_token": token, "reference": "x", "reason": "x"})


@pytest.fixture
def admin(db_session):  # type: ignore[no-untyped-def]
    return AdminFactory()


class TestOnlyAdmins:
    @pytest.mark.parametrize(("method", "path"), PAGES)
    def test_anonymous_pages_go_to_log_in(self, client, db_session, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
        response = send(client, method, path, csrf_token(client))
        assert response.status_code == 302 and "/login" in response.headers["Location"]

    @pytest.mark.parametrize(("method", "path"), APIS)
    def test_anonymous_api_is_401(self, client, db_session, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
        response = send(client, method, path, csrf_token(client))
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"

    @pytest.mark.parametrize(("method", "path"), PAGES + APIS)
    def test_a_seller_gets_403(self, client, db_session, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        seller = ProfileFactory().user
        login(client, seller)
        response = send(client, method, path.replace(ANY_ID, str(payout.id)), csrf_token(client))
        assert response.status_code == 403
        if path.startswith("/api/"):
            assert response.get_json()["error"]["code"] == "forbidden"
        db_session.expire_all()
        assert db_session.get(PayoutRequest, payout.id).status == PayoutStatus.REQUESTED


class TestQueuePage:
    def test_lists_waiting_payouts_oldest_first_with_forms(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        older = requested_payout(db_session, 1100, email="older@example.com", at=datetime(2026, 1, 1, tzinfo=UTC))
        newer = requested_payout(db_session, 2200, email="newer@example.com", at=datetime(2026, 1, 2, tzinfo=UTC))
        login(client, admin)

        html = client.get("/admin/payouts").get_data(as_text=True)

        assert html.index("older@example.com") < html.index("newer@example.com")
        assert "$11" in html and "$22" in html
        for payout in (older, newer):
            assert f'action="/admin/payouts/{payout.id}/process"' in html
            assert f'action="/admin/payouts/{payout.id}/reject"' in html
        assert 'href="/admin/ledger.csv"' not in html  # the export is a GET form
        assert 'action="/admin/ledger.csv"' in html
        assert "style=" not in html

    def test_filters(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        waiting = requested_payout(db_session, email="waiting@example.com")
        done = requested_payout(db_session, email="done@example.com")
        payouts.process_payout(db_session, done.id, admin_id=admin.id, reference="REF-1", now=utcnow())
        db_session.flush()
        login(client, admin)

        processed = client.get("/admin/payouts?status=processed").get_data(as_text=True)
        assert "done@example.com" in processed and "REF-1" in processed and "waiting@example.com" not in processed
        everything = client.get("/admin/payouts?status=all").get_data(as_text=True)
        assert "done@example.com" in everything and "waiting@example.com" in everything
        assert client.get("/admin/payouts?status=bogus").status_code == 400
        assert waiting.status == PayoutStatus.REQUESTED

    def test_process_form(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        login(client, admin)

        response = client.post(
            f"/admin/payouts/{payout.id}/process", data={"csrf_token": csrf_token(client), "reference": "WIRE-7"}
        )

        assert response.status_code == 303 and response.headers["Location"] == "/admin/payouts"
        db_session.expire_all()
        stored = db_session.get(PayoutRequest, payout.id)
        assert (stored.status, stored.reference, stored.processed_by_id) == (PayoutStatus.PROCESSED, "WIRE-7", admin.id)
        assert "marked processed" in client.get("/admin/payouts").get_data(as_text=True)

    def test_reject_form(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session, 3000)
        login(client, admin)

        client.post(f"/admin/payouts/{payout.id}/reject", data={"csrf_token": csrf_token(client), "reason": "Closed"})

        db_session.expire_all()
        assert db_session.get(PayoutRequest, payout.id).status == PayoutStatus.REJECTED
        assert ledger.available_cents(db_session, payout.seller_id, "usd") == 3000

    def test_empty_reason_is_flashed_and_changes_nothing(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        login(client, admin)
        client.post(f"/admin/payouts/{payout.id}/reject", data={"csrf_token": csrf_token(client), "reason": " "})
        assert "Enter a reason the seller will read." in client.get("/admin/payouts").get_data(as_text=True)
        db_session.expire_all()
        assert db_session.get(PayoutRequest, payout.id).status == PayoutStatus.REQUESTED

    def test_second_decision_is_flashed_as_a_conflict(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        login(client, admin)
        token = csrf_token(client)
        client.post(f"/admin/payouts/{payout.id}/process", data={"csrf_token": token, "reference": "A"})
        client.post(f"/admin/payouts/{payout.id}/reject", data={"csrf_token": token, "reason": "B"})
        assert "already processed" in client.get("/admin/payouts").get_data(as_text=True)


class TestProcessApi:
    @pytest.fixture
    def call(self, client, admin):  # type: ignore[no-untyped-def]
        login(client, admin)
        token = csrf_token(client)

        def post(payout_id: object, body: object):  # type: ignore[no-untyped-def]
            return client.post(f"/api/admin/payouts/{payout_id}/process", json=body, headers={"X-CSRFToken": token})

        return post

    def test_process(self, call, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session, 2500)

        response = call(payout.id, {"action": "process", "reference": "SEPA-123"})

        assert response.status_code == 200
        body = response.get_json()["payout"]
        assert (body["id"], body["status"], body["reference"]) == (str(payout.id), "PROCESSED", "SEPA-123")
        assert body["processedAt"].endswith("Z")
        emails = db_session.scalars(select(OutboxEmail).where(OutboxEmail.template == "payout_processed")).all()
        assert [e.context["reference"] for e in emails] == ["SEPA-123"]
        event = db_session.scalar(select(EventLog).where(EventLog.type == "admin.payout_processed"))
        assert event.actor == f"user:{admin.id}"

    def test_action_defaults_to_process(self, call, db_session) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        assert call(payout.id, {"reference": "R"}).get_json()["payout"]["status"] == "PROCESSED"

    def test_reject(self, call, db_session) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session, 2500)

        response = call(payout.id, {"action": "reject", "reason": "Account closed"})

        assert response.status_code == 200
        assert response.get_json()["payout"]["rejectReason"] == "Account closed"
        kinds = db_session.scalars(
            select(LedgerEntry.kind).where(LedgerEntry.payout_request_id == payout.id).order_by(LedgerEntry.kind)
        ).all()
        assert kinds == [LedgerKind.PAYOUT, LedgerKind.REVERSAL]

    def test_second_decision_is_409(self, call, db_session) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        assert call(payout.id, {"action": "process", "reference": "A"}).status_code == 200
        response = call(payout.id, {"action": "reject", "reason": "B"})
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "already_decided"

    @pytest.mark.parametrize(
        ("body", "status", "field"),
        [
            ({"action": "process"}, 422, "reference"),
            ({"action": "process", "reference": 42}, 422, "reference"),
            ({"action": "reject", "reason": ""}, 422, "reason"),
            ({"action": "pay"}, 422, "action"),
            (["process"], 400, None),
        ],
    )
    def test_invalid_bodies(self, call, db_session, body: object, status: int, field: str | None) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session)
        response = call(payout.id, body)
        assert response.status_code == status
        if field:
            assert field in response.get_json()["error"]["fields"]
        db_session.expire_all()
        assert db_session.get(PayoutRequest, payout.id).status == PayoutStatus.REQUESTED

    def test_unknown_payout_is_404(self, call) -> None:  # type: ignore[no-untyped-def]
        assert call(uuid.uuid4(), {"action": "process", "reference": "R"}).status_code == 404
        assert call("not-a-uuid", {"action": "process", "reference": "R"}).status_code == 404

    def test_queue_json(self, client, call, db_session) -> None:  # type: ignore[no-untyped-def]
        payout = requested_payout(db_session, email="queued@example.com")
        body = client.get("/api/admin/payouts").get_json()
        assert [(p["id"], p["sellerEmail"], p["status"]) for p in body["payouts"]] == [
            (str(payout.id), "queued@example.com", "REQUESTED")
        ]


class TestAdminCsv:
    def test_everyones_rows_with_date_filters(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        requested_payout(db_session, 1100, email="march@example.com", at=datetime(2026, 3, 10, tzinfo=UTC))
        requested_payout(db_session, 2200, email="april@example.com", at=datetime(2026, 4, 10, tzinfo=UTC))
        login(client, admin)

        everything = list(csv.reader(io.StringIO(client.get("/admin/ledger.csv").get_data(as_text=True))))
        april = client.get("/admin/ledger.csv?from=2026-04-01&to=2026-04-30")
        april_rows = list(csv.reader(io.StringIO(april.get_data(as_text=True))))[1:]

        assert everything[0] == list(ledger.ADMIN_CSV_COLUMNS)
        assert [(r[3], r[4], r[5]) for r in everything[1:]] == [
            ("march@example.com", "earning", "1100"),
            ("march@example.com", "payout", "-1100"),
            ("april@example.com", "earning", "2200"),
            ("april@example.com", "payout", "-2200"),
        ]
        assert {r[3] for r in april_rows} == {"april@example.com"} and len(april_rows) == 2
        assert 'filename="chatlink-ledger-all-2026-04-01-2026-04-30.csv"' in april.headers["Content-Disposition"]

    def test_bad_date_is_400(self, client, admin) -> None:  # type: ignore[no-untyped-def]
        login(client, admin)
        assert client.get("/admin/ledger.csv?to=31/12/2026").status_code == 400

    def test_formula_email_is_defused(self, client, db_session, admin) -> None:  # type: ignore[no-untyped-def]
        requested_payout(db_session, email="+1-800@example.com")
        login(client, admin)
        rows = list(csv.reader(io.StringIO(client.get("/admin/ledger.csv").get_data(as_text=True))))[1:]
        assert {r[3] for r in rows} == {"'+1-800@example.com"}

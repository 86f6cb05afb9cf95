""" "Report a problem with this call": ``POST /api/calls/<id>/problem`` and the party's page (once per
party, within 48 h of the end), the case in the admin's disputes queue with the call's facts, and the
admin's refund (one reversal, one gateway refund, even for concurrent clicks) or close, each audited
and emailed to both parties."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from app.db import db, utcnow
from app.models import (
    Checkout,
    CheckoutStatus,
    EventLog,
    LedgerEntry,
    LedgerKind,
    OutboxEmail,
    PaymentState,
    ProblemCase,
    ProblemStatus,
    RequestStatus,
)
from app.refusals import Conflict
from app.services import call_endings, media_presence, problems
from app.services.buyer_status import hash_browser_key
from app.services.calls import CallConfig, join_token
from app.web.payments import _browser_key_cookie
from tests.call_helpers import SECRET_KEY, FakeGateway, accepted_call
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory
from tests.trust_support import page_csrf


@pytest.fixture
def config(settings) -> CallConfig:
    return CallConfig.from_settings(settings)


def ended_call(session, config, *, ended_by="seller", after=100):  # type: ignore[no-untyped-def]
    """A call both were connected to from its start, ended by ``ended_by`` ``after`` seconds in."""
    start = utcnow() - timedelta(seconds=after + 60)
    call = accepted_call(now=start - timedelta(seconds=30))
    call.started_at, call.ends_at = start, start + timedelta(seconds=300)
    session.flush()
    for party in ("buyer", "seller"):
        for beat in range(0, after + 1, 4):
            media_presence.page_connected(session, call.id, party, f"{party}-w", start + timedelta(seconds=beat))
    end = start + timedelta(seconds=after)
    assert call_endings.end_call(session, call.id, ended_by=ended_by, config=config, now=end) == "ended"
    session.commit()
    return call


def report(client, call, party="buyer", **body):  # type: ignore[no-untyped-def]
    payload = {"token": join_token(SECRET_KEY, call, party), "reason": "ended_early", "details": "Cut off."} | body
    return client.post(f"/api/calls/{call.id}/problem", json=payload)


def count(session, model, *conditions) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model).where(*conditions))


class TestReporting:
    def test_each_party_reports_once(self, client, db_session, config) -> None:
        AdminFactory()
        call = ended_call(db_session, config)
        first = report(client, call)
        assert first.status_code == 201
        case = db_session.get(ProblemCase, uuid.UUID(first.get_json()["caseId"]))
        assert (case.party, case.reason.value, case.details, case.status) == (
            "buyer",
            "ended_early",
            "Cut off.",
            ProblemStatus.OPEN,
        )
        again = report(client, call, reason="other")
        assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_reported")
        # The seller has their own case, with their credential...
        assert report(client, call, "seller").status_code == 201
        assert count(db_session, ProblemCase, ProblemCase.call_request_id == call.id) == 2
        # ... and the admins are told, once per case.
        assert count(db_session, OutboxEmail, OutboxEmail.template == "problem_opened_admin") == 2

    def test_the_seller_may_use_their_session_instead_of_a_token(self, client, db_session, config) -> None:
        call = ended_call(db_session, config)
        seller = call.transaction.seller_id
        from app.models import User

        login(client, db_session.get(User, seller))
        body = {"reason": "poor_quality", "details": ""}
        assert client.post(f"/api/calls/{call.id}/problem", json=body).status_code == 400  # CSRF first
        response = client.post(f"/api/calls/{call.id}/problem", json=body, headers={"X-CSRFToken": csrf_token(client)})
        assert response.status_code == 201
        assert db_session.get(ProblemCase, uuid.UUID(response.get_json()["caseId"])).party == "seller"

    def test_without_a_credential_nothing_is_filed(self, client, db_session, config) -> None:
        call = ended_call(db_session, config)
        assert client.post(f"/api/calls/{call.id}/problem", json={"reason": "other"}).status_code == 401
        forged = report(client, call, token=join_token("another-secret-key-entirely", call, "buyer"))
        assert forged.status_code == 404
        assert report(client, call, reason="because").status_code == 422
        assert count(db_session, ProblemCase) == 0

    def test_only_after_the_end_and_for_48_hours(self, client, db_session, config) -> None:
        live = accepted_call()
        assert report(client, live).get_json()["error"]["code"] == "not_reportable"
        call = ended_call(db_session, config)
        with freeze_time(call.ended_at + timedelta(hours=48, seconds=1)):
            late = report(client, call)
        assert (late.status_code, late.get_json()["error"]["code"]) == (409, "too_late")

    def test_the_case_carries_the_facts_the_server_measured(self, client, db_session, config) -> None:
        call = ended_call(db_session, config, after=100)
        case_id = report(client, call).get_json()["caseId"]
        facts = db_session.get(ProblemCase, uuid.UUID(case_id)).facts
        assert (facts["endedBy"], facts["status"]) == ("seller", RequestStatus.COMPLETED.value)
        assert facts["settlement"] == {
            "outcome": "seller_ended_early",
            "connectedSeconds": 100,
            "grossCents": 1000,
            "refundCents": 667,
            "feeCents": 67,
            "netCents": 266,
            "currency": "usd",
        }
        assert facts["intervals"]["source"] == "page"
        for party in ("buyer", "seller"):
            [[start, end]] = facts["intervals"][party]
            assert start.endswith("Z") and end.endswith("Z")

    def test_the_page_files_a_report_from_the_link(self, client, db_session, config) -> None:
        call = ended_call(db_session, config)
        link = f"/call/{call.id}/problem?t={join_token(SECRET_KEY, call, 'buyer')}"
        page = client.get(link)
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
        html = page.get_data(as_text=True)
        assert "Report a problem with this call" in html and 'value="no_connection"' in html
        sent = client.post(link, data={"csrf_token": page_csrf(html), "reason": "no_connection", "details": "Black"})
        assert sent.status_code == 201 and 'id="problem-filed"' in sent.get_data(as_text=True)
        assert count(db_session, ProblemCase) == 1

    def test_the_end_screen_and_the_status_page_link_to_it(self, client, db_session, config) -> None:
        call = ended_call(db_session, config)
        token = join_token(SECRET_KEY, call, "buyer")
        ended = client.get(f"/call/{call.id}?t={token}")
        html = ended.get_data(as_text=True)
        assert ended.status_code == 410
        assert "The seller ended the call after 1 min 40 s: you will be refunded $6.67" in html
        assert f"/call/{call.id}/problem?t={token}" in html
        session_id = call.transaction.stripe_checkout_session_id
        db_session.add(
            Checkout(
                seller_id=call.seller_id,
                buyer_email=call.buyer_email,
                amount_cents=1000,
                currency="usd",
                submission_key=uuid.uuid4().hex,
                stripe_checkout_session_id=session_id,
                status=CheckoutStatus.COMPLETE,
                expires_at=utcnow(),
                browser_key_hash=hash_browser_key("the-paying-browser"),
            )
        )
        db_session.flush()
        # The session id alone shows what happened, but not the link: it carries the buyer's credential.
        anyone = client.get(f"/api/requests/status?session_id={session_id}").get_json()
        assert anyone["problemUrl"] is None and anyone["outcome"].startswith("The seller ended the call")
        client.set_cookie(_browser_key_cookie(session_id), "the-paying-browser")
        status = client.get(f"/api/requests/status?session_id={session_id}").get_json()
        assert status["problemUrl"].endswith(f"/call/{call.id}/problem?t={token}")
        assert status["outcome"].startswith("The seller ended the call after 1 min 40 s")
        page = client.get(f"/success?session_id={session_id}").get_data(as_text=True)
        assert "Report a problem with this call" in page and "you will be refunded $6.67" in page


def refund(client, case_id, cents, note="Sorry about that"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/admin/problems/{case_id}/refund",
        json={"amountCents": cents, "note": note},
        headers={"X-CSRFToken": csrf_token(client)},
    )


class TestAdminDecision:
    def test_a_partial_refund_reverses_the_sellers_share_once(self, client, db_session, config, enqueued) -> None:
        call = ended_call(db_session, config, ended_by="buyer")  # the buyer paid in full: $10.00, seller $8.00
        case_id = report(client, call).get_json()["caseId"]
        staff = AdminFactory()
        login(client, staff)

        response = refund(client, case_id, 500)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()["problem"]
        assert (body["status"], body["refundCents"], body["reversalCents"], body["refundableCents"]) == (
            "refunded",
            500,
            400,
            500,
        )
        [reversal] = db_session.scalars(select(LedgerEntry).where(LedgerEntry.problem_case_id == uuid.UUID(case_id)))
        assert (reversal.kind, reversal.amount_cents, reversal.seller_id) == (LedgerKind.REVERSAL, -400, call.seller_id)
        again = refund(client, case_id, 100)
        assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_resolved")
        assert count(db_session, LedgerEntry, LedgerEntry.kind == LedgerKind.REVERSAL) == 1
        assert enqueued.names().count("tasks.problems.refund_problem") == 1
        [event] = db_session.scalars(select(EventLog).where(EventLog.type == "admin.problem_refunded"))
        assert (event.actor, event.ref_id) == (f"user:{staff.id}", case_id)
        templates = set(
            db_session.scalars(select(OutboxEmail.template).where(OutboxEmail.dedupe_key.like(f"%{case_id}")))
        )
        assert templates == {"problem_resolved_buyer", "problem_resolved_seller"}

        # The worker refunds at the gateway, with the amount and one key per case.
        gateway = FakeGateway()
        assert problems.pay_problem_refund(db_session, uuid.UUID(case_id), gateway=gateway, now=utcnow()) == "refunded"
        assert problems.pay_problem_refund(db_session, uuid.UUID(case_id), gateway=gateway, now=utcnow()) == "skipped"
        assert gateway.calls == [("refund", call.transaction.stripe_payment_intent_id, f"refund:problem:{case_id}")]
        db_session.refresh(call.transaction)
        assert (call.transaction.payment_state, call.transaction.refunded_cents) == (PaymentState.CAPTURED, 500)

    def test_a_refund_is_bounded_by_what_the_buyer_still_has_paid(self, client, db_session, config) -> None:
        call = ended_call(db_session, config, ended_by="seller", after=100)  # $6.67 already back, $3.33 kept
        case_id = report(client, call).get_json()["caseId"]
        login(client, AdminFactory())
        too_much = refund(client, case_id, 334)
        assert too_much.status_code == 422
        assert refund(client, case_id, 333).get_json()["problem"]["reversalCents"] == 266  # all the seller earned

    def test_closing_needs_a_note_and_tells_both(self, client, db_session, config) -> None:
        call = ended_call(db_session, config)
        case_id = report(client, call).get_json()["caseId"]
        login(client, AdminFactory())
        headers = {"X-CSRFToken": csrf_token(client)}
        assert (
            client.post(f"/api/admin/problems/{case_id}/close", json={"note": ""}, headers=headers).status_code == 422
        )
        closed = client.post(
            f"/api/admin/problems/{case_id}/close", json={"note": "The logs show 1 min 40 s."}, headers=headers
        )
        assert closed.get_json()["problem"]["status"] == "closed"
        assert count(db_session, LedgerEntry, LedgerEntry.kind == LedgerKind.REVERSAL) == 0
        assert count(db_session, EventLog, EventLog.type == "admin.problem_closed") == 1
        emails = db_session.scalars(select(OutboxEmail).where(OutboxEmail.template.like("problem_resolved_%"))).all()
        assert {e.context["note"] for e in emails} == {"The logs show 1 min 40 s."} and len(emails) == 2

    def test_the_disputes_queue_shows_the_case_and_refunds_from_the_page(self, client, db_session, config) -> None:
        call = ended_call(db_session, config, ended_by="buyer")
        case_id = report(client, call, details="The picture froze").get_json()["caseId"]
        login(client, AdminFactory())
        html = client.get("/admin/disputes").get_data(as_text=True)
        assert f'id="problem-{case_id}"' in html and "The picture froze" in html
        assert "buyer_ended" not in html and "buyer ended" in html  # the settlement, readable
        done = client.post(
            f"/admin/problems/{case_id}/refund", data={"csrf_token": page_csrf(html), "amount": "2.50", "note": ""}
        )
        assert done.status_code == 303
        db_session.expire_all()
        assert db_session.get(ProblemCase, uuid.UUID(case_id)).refund_cents == 250

    def test_only_admins(self, client, db_session, config) -> None:
        call = ended_call(db_session, config)
        case_id = report(client, call).get_json()["caseId"]
        assert client.get("/api/admin/problems").status_code == 401
        from app.models import User

        login(client, db_session.get(User, call.seller_id))
        assert refund(client, case_id, 100).status_code == 403

    def test_the_sweep_recovers_a_lost_refund(self, client, db_session, config, settings, enqueued) -> None:
        call = ended_call(db_session, config, ended_by="buyer")
        case = problems.open_case(db_session, call, "buyer", problems.clean_draft("other", ""), now=utcnow())
        problems.refund_case(db_session, case.id, admin_id=AdminFactory().id, amount_cents=100, note="", now=utcnow())
        db_session.commit()
        enqueued.clear()  # the broker lost it
        assert problems.recover_problem_refunds(db_session, utcnow(), settings) == {"problem_refunds_requeued": 0}
        later = utcnow() + timedelta(seconds=61)
        assert problems.recover_problem_refunds(db_session, later, settings) == {"problem_refunds_requeued": 1}
        db_session.commit()
        assert enqueued.names() == ["tasks.problems.refund_problem"]
        assert problems.recover_problem_refunds(db_session, later, settings) == {"problem_refunds_requeued": 0}


def test_concurrent_admin_clicks_refund_once(committed_db, settings) -> None:
    config = CallConfig.from_settings(settings)
    call = ended_call(committed_db, config, ended_by="buyer")
    case = problems.open_case(committed_db, call, "buyer", problems.clean_draft("other", ""), now=utcnow())
    admins = [AdminFactory().id for _ in range(4)]
    committed_db.commit()
    barrier = threading.Barrier(len(admins))
    outcomes: list[str] = []

    def click(admin_id: uuid.UUID) -> None:
        session = db.new_session()
        try:
            barrier.wait()
            problems.refund_case(session, case.id, admin_id=admin_id, amount_cents=1000, note="", now=utcnow())
            session.commit()
            outcomes.append("refunded")
        except Conflict as refused:
            session.rollback()
            outcomes.append(refused.code)
        finally:
            session.close()

    threads = [threading.Thread(target=click, args=(admin_id,)) for admin_id in admins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["already_resolved"] * 3 + ["refunded"]
    assert count(committed_db, LedgerEntry, LedgerEntry.kind == LedgerKind.REVERSAL) == 1
    assert count(committed_db, EventLog, EventLog.type == "admin.problem_refunded") == 1
    assert count(committed_db, OutboxEmail, OutboxEmail.template == "problem_resolved_buyer") == 1

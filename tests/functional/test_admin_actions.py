"""Admin actions through the Flask client: each one changes what it should and leaves an audit row
with the admin as actor and the object as reference; and no secret ever reaches the event log."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from app.db import utcnow
from app.models import (
    CallRequest,
    EventLog,
    OutboxEmail,
    PaymentState,
    Report,
    ReporterRole,
    ReportStatus,
    RequestStatus,
    User,
)
from app.services import safety
from app.services.safety import ReportDraft
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, CallRequestFactory, ProfileFactory, TransactionFactory
from tests.trust_support import buyer_token, finished_call, fresh_rate_limits, page_csrf, where_is  # noqa: F401 (fresh_rate_limits is autouse)


def audit(session, type_: str) -> list[EventLog]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(EventLog).where(EventLog.type == type_)))


def filed_report(session, text: str = "He shouted") -> Report:  # type: ignore[no-untyped-def]
    call = finished_call()
    return safety.file_report(session, call, ReporterRole.BUYER, ReportDraft("harassment", text), now=utcnow())


class TestReportsQueue:
    def test_the_queue_shows_the_report_and_resolves_it_from_the_page(self, client, db_session) -> None:
        staff = AdminFactory()
        report = filed_report(db_session, "He shouted at me")
        login(client, staff)
        html = client.get("/admin/reports").get_data(as_text=True)
        assert f'id="report-{report.id}"' in html and "He shouted at me" in html

        done = client.post(
            f"/admin/reports/{report.id}/resolve", data={"csrf_token": page_csrf(html), "note": "Warned"}
        )
        assert done.status_code == 303
        db_session.expire_all()
        assert db_session.get(Report, report.id).status == ReportStatus.RESOLVED
        [event] = audit(db_session, "admin.report_resolved")
        assert (event.actor, event.ref_id) == (f"user:{staff.id}", str(report.id))
        assert 'id="no-reports"' in client.get("/admin/reports").get_data(as_text=True)
        assert "Warned" in client.get("/admin/reports?status=resolved").get_data(as_text=True)

    def test_the_api_resolves_once(self, client, db_session) -> None:
        staff = AdminFactory()
        report = filed_report(db_session)
        login(client, staff)
        headers = {"X-CSRFToken": csrf_token(client)}
        url = f"/api/admin/reports/{report.id}/resolve"

        assert client.post(url, json={}, headers=headers).status_code == 422
        assert client.post(url, json={"note": "  "}, headers=headers).status_code == 422
        resolved = client.post(url, json={"note": "Refunded and warned"}, headers=headers)
        assert resolved.status_code == 200
        body = resolved.get_json()["report"]
        assert (body["status"], body["resolutionNote"]) == ("resolved", "Refunded and warned")
        again = client.post(url, json={"note": "again"}, headers=headers)
        assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_resolved")
        assert (
            client.post(
                "/api/admin/reports/00000000-0000-0000-0000-000000000000/resolve", json={"note": "x"}, headers=headers
            ).status_code
            == 404
        )
        listed = client.get("/api/admin/reports?status=resolved").get_json()["reports"]
        assert [r["id"] for r in listed] == [str(report.id)]
        assert len(audit(db_session, "admin.report_resolved")) == 1


class TestSellers:
    def test_suspend_and_reinstate_from_the_page(self, client, db_session, enqueued) -> None:
        staff = AdminFactory()
        profile = ProfileFactory(slug="gone-quiet")
        waiting = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
        login(client, staff)
        html = client.get("/admin/sellers?q=gone-quiet").get_data(as_text=True)
        assert f'id="seller-{profile.user_id}"' in html

        response = client.post(
            f"/admin/sellers/{profile.user_id}/suspend", data={"csrf_token": page_csrf(html), "note": "Reports"}
        )
        assert response.status_code == 303
        db_session.expire_all()
        assert db_session.get(User, profile.user_id).suspended_at is not None
        assert db_session.get(CallRequest, waiting.id).status == RequestStatus.DECLINED
        assert ("tasks.request_payments.release_hold", (str(waiting.id),)) in [(n, a) for n, a, _ in enqueued]
        [event] = audit(db_session, "admin.seller_suspended")
        assert (event.actor, event.ref_id, event.payload) == (
            f"user:{staff.id}",
            str(profile.user_id),
            {"note": "Reports"},
        )
        # The public page says so and refuses a booking.
        assert "not taking calls" in client.get("/u/gone-quiet").get_data(as_text=True)
        html = client.get("/admin/sellers").get_data(as_text=True)
        assert "suspended" in html and "Reinstate" in html

        client.post(f"/admin/sellers/{profile.user_id}/unsuspend", data={"csrf_token": page_csrf(html)})
        db_session.expire_all()
        assert db_session.get(User, profile.user_id).suspended_at is None
        assert audit(db_session, "admin.seller_unsuspended")[0].actor == f"user:{staff.id}"

    def test_the_api(self, client, db_session) -> None:
        staff = AdminFactory()
        seller = ProfileFactory().user
        login(client, staff)
        headers = {"X-CSRFToken": csrf_token(client)}
        url = f"/api/admin/sellers/{seller.id}"
        assert client.post(f"{url}/suspend", json={"note": "spam"}, headers=headers).get_json() == {
            "seller": {"id": str(seller.id), "suspended": True}
        }
        assert client.post(f"{url}/suspend", json={}, headers=headers).status_code == 409
        assert client.post(f"{url}/unsuspend", headers=headers).status_code == 200
        assert client.post(f"{url}/unsuspend", headers=headers).status_code == 409
        assert client.post(f"/api/admin/sellers/{staff.id}/suspend", headers=headers).status_code == 404


class TestReadPages:
    def test_disputes_events_and_summary(self, client, db_session) -> None:
        staff = AdminFactory()
        disputed = TransactionFactory(
            payment_state=PaymentState.DISPUTED,
            disputed_at=utcnow(),
            gross_cents=4200,
            platform_fee_cents=840,
            net_cents=3360,
        )
        finished_call(gross_cents=2500, fee_cents=500, ended_at=utcnow() - timedelta(hours=1))
        report = filed_report(db_session)
        login(client, staff)

        assert f'id="dispute-{disputed.id}"' in client.get("/admin/disputes").get_data(as_text=True)
        events = client.get(f"/admin/events?type=report&ref={report.id}").get_data(as_text=True)
        assert "report.filed" in events and str(report.id) in events
        assert 'id="no-events"' in client.get("/admin/events?type=nothing.like.this").get_data(as_text=True)
        summary = client.get("/admin/summary?days=7").get_data(as_text=True)
        # The reported call (gross $10, fee $2) and this one (gross $25, fee $5), whatever the day split.
        totals = summary[summary.index('id="totals"') :]
        assert "$35.00" in totals and "$7.00" in totals and "$28.00" in totals
        index = client.get("/admin").get_data(as_text=True)
        assert '<strong id="count-reports">1</strong>' in index and '<strong id="count-disputes">1</strong>' in index


class TestErase:
    def test_from_the_page_and_the_api(self, client, db_session) -> None:
        staff = AdminFactory()
        finished_call(buyer_email="forget.me@example.org")
        finished_call(buyer_email="me.too@example.org")
        login(client, staff)
        html = client.get("/admin/erase").get_data(as_text=True)

        done = client.post("/admin/erase", data={"csrf_token": page_csrf(html), "email": "Forget.Me@example.org"})
        assert done.status_code == 200 and 'id="erase-result"' in done.get_data(as_text=True)
        assert where_is(db_session, "forget.me@example.org") == {}

        answer = client.post(
            "/api/admin/erase", json={"email": "me.too@example.org"}, headers={"X-CSRFToken": csrf_token(client)}
        )
        assert answer.status_code == 200 and answer.get_json()["erasure"]["tombstone"].startswith("erased-")
        assert where_is(db_session, "me.too@example.org") == {}
        for event in audit(db_session, "admin.buyer_erased"):
            assert event.actor == f"user:{staff.id}" and event.ref_id.startswith("erased-")

    def test_an_account_address_is_refused(self, client, db_session) -> None:
        seller = ProfileFactory().user
        login(client, AdminFactory())
        html = client.get("/admin/erase").get_data(as_text=True)
        refused = client.post("/admin/erase", data={"csrf_token": page_csrf(html), "email": seller.email})
        assert refused.status_code == 409 and "belongs to a ChatLink account" in refused.get_data(as_text=True)


class TestNoSecretInTheEventLog:
    def test_passwords_and_tokens_never_reach_an_event(self, app, client, db_session) -> None:
        secrets_seen: list[str] = []
        password, new_password = "Tr0ub4dor&3-staple", "c0rrect-h0rse-battery"
        secrets_seen += [password, new_password]

        signup = client.post(
            "/api/auth/signup",
            json={"email": "new.seller@example.com", "password": password},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert signup.status_code == 202
        bad = client.post(
            "/api/auth/login",
            json={"email": "new.seller@example.com", "password": password + "x"},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert bad.status_code == 401
        client.post(
            "/api/auth/forgot", json={"email": "new.seller@example.com"}, headers={"X-CSRFToken": csrf_token(client)}
        )
        reset_url = db_session.scalar(select(OutboxEmail.context).where(OutboxEmail.template == "password_reset"))[
            "reset_url"
        ]
        reset_token = reset_url.rsplit("/", 1)[1]
        secrets_seen.append(reset_token)
        reset = client.post(
            "/api/auth/reset",
            json={"token": reset_token, "newPassword": new_password},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert reset.status_code == 200

        call = finished_call()
        token = buyer_token(call)
        secrets_seen += [token, call.join_key]
        client.post(f"/api/calls/{call.id}/rating", json={"token": token, "stars": 5})
        client.post(f"/api/calls/{call.id}/report", json={"token": token, "reason": "spam"})

        user = db_session.scalar(select(User).where(User.email == "new.seller@example.com"))
        login(client, user)
        deleted = client.post(
            "/api/account/delete", json={"password": new_password}, headers={"X-CSRFToken": csrf_token(client)}
        )
        assert deleted.status_code == 200

        rows = db_session.scalars(select(EventLog)).all()
        types = {row.type for row in rows}
        assert {"rating.created", "report.filed", "account.deleted"} <= types and len(rows) >= 6
        assert len([t for t in types if t.startswith("auth.")]) >= 3, types  # sign-up, failed log-in, reset
        dumped = json.dumps([[row.type, row.ref_id, row.actor, row.payload] for row in rows])
        for secret in secrets_seen:
            assert secret not in dumped
        assert "$2b$" not in dumped and "password" not in dumped.lower().replace("auth.password_reset", "")
        assert app.extensions["settings"].secret_key not in dumped

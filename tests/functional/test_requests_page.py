"""The ``/requests`` page: server-rendered, filterable, and usable with plain form posts."""

from __future__ import annotations

import re

import pytest

from app.db import utcnow
from app.models import CallRequest, RequestStatus
from tests.conftest import login
from tests.factories import CallRequestFactory, ProfileFactory


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Ada").user


@pytest.fixture
def signed_in(client, seller):  # type: ignore[no-untyped-def]
    login(client, seller)
    return client


def page_token(client) -> str:  # type: ignore[no-untyped-def]
    html = client.get("/requests").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def status_of(db_session, call_request: CallRequest) -> RequestStatus:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.get(CallRequest, call_request.id).status


class TestPage:
    def test_anonymous_is_sent_to_log_in(self, client) -> None:  # type: ignore[no-untyped-def]
        response = client.get("/requests")
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]

    def test_lists_own_pending_requests_with_both_buttons(self, signed_in, seller) -> None:  # type: ignore[no-untyped-def]
        mine = CallRequestFactory(transaction__seller=seller, note="<script>alert(1)</script>\nsecond line")
        theirs = CallRequestFactory()

        response = signed_in.get("/requests")
        html = response.get_data(as_text=True)

        assert response.status_code == 200
        assert f'id="request-{mine.id}"' in html
        assert str(theirs.id) not in html and theirs.buyer_email not in html
        assert mine.buyer_email in html
        assert "$10.00" in html and "You earn $8.00" in html
        assert f'action="/requests/{mine.id}/accept"' in html
        assert f'action="/requests/{mine.id}/decline"' in html
        row = html[html.index(f'id="request-{mine.id}"') :].split("</tr>")[0]
        assert row.count('name="csrf_token"') == 2
        # Decline is a second step (a disclosure), with an optional message for the buyer's email.
        decline = row[row.index('<details class="decline-box">') :].split("</details>")[0]
        assert "Decline…" in decline and 'name="message"' in decline and "release the hold" in decline
        # The buyer's note is data, never markup; the page has no inline script or style (CSP).
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>" not in html and "style=" not in html and "<style" not in html
        # It keeps itself current: a long-poll for the seller's changes, a meta refresh without script.
        assert 'data-live-url="/api/live/seller"' in html and "/static/js/live.js" in html
        assert '<noscript><meta http-equiv="refresh" content="60"></noscript>' in html

    def test_status_filter(self, signed_in, seller) -> None:  # type: ignore[no-untyped-def]
        pending = CallRequestFactory(transaction__seller=seller)
        declined = CallRequestFactory(transaction__seller=seller, status=RequestStatus.DECLINED, declined_at=utcnow())

        html = signed_in.get("/requests?status=declined").get_data(as_text=True)

        assert f"request-{declined.id}" in html and f"request-{pending.id}" not in html
        assert re.search(r'href="/requests\?status=declined"\s+aria-current="page"', html)
        everything = signed_in.get("/requests?status=bogus").get_data(as_text=True)
        assert f"request-{declined.id}" in everything and f"request-{pending.id}" in everything

    def test_empty_state(self, signed_in) -> None:  # type: ignore[no-untyped-def]
        html = signed_in.get("/requests?status=completed").get_data(as_text=True)
        assert "No completed requests." in html


class TestFormPosts:
    def test_accept_without_javascript(self, signed_in, seller, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)

        response = signed_in.post(
            f"/requests/{call_request.id}/accept", data={"csrf_token": page_token(signed_in), "back": "pending"}
        )

        assert response.status_code == 303
        assert response.headers["Location"].endswith("/requests?status=pending")
        assert status_of(db_session, call_request) is RequestStatus.ACCEPTED
        assert "tasks.request_payments.capture_accepted" in enqueued.names()
        html = signed_in.get("/requests?status=accepted").get_data(as_text=True)
        assert "Accepted. We are charging the buyer" in html
        assert f'href="http://127.0.0.1:5000/call/{call_request.id}?t=' in html

    def test_decline_without_javascript(self, signed_in, seller, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)

        response = signed_in.post(
            f"/requests/{call_request.id}/decline", data={"csrf_token": page_token(signed_in)}, follow_redirects=True
        )

        assert response.status_code == 200
        assert "Declined. The buyer&#39;s payment is released" in response.get_data(as_text=True)
        assert status_of(db_session, call_request) is RequestStatus.DECLINED
        assert "tasks.request_payments.release_hold" in enqueued.names()

    def test_conflict_is_explained_not_raised(self, signed_in, seller, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)
        token = page_token(signed_in)
        signed_in.post(f"/requests/{call_request.id}/accept", data={"csrf_token": token})

        response = signed_in.post(
            f"/requests/{call_request.id}/decline", data={"csrf_token": token}, follow_redirects=True
        )

        assert response.status_code == 200
        assert "This request was already accepted." in response.get_data(as_text=True)
        assert status_of(db_session, call_request) is RequestStatus.ACCEPTED

    def test_csrf_token_is_required(self, signed_in, seller, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)
        response = signed_in.post(f"/requests/{call_request.id}/accept", data={})
        assert response.status_code == 400
        assert status_of(db_session, call_request) is RequestStatus.PENDING

    def test_another_sellers_request_is_404(self, signed_in, db_session) -> None:  # type: ignore[no-untyped-def]
        theirs = CallRequestFactory()
        response = signed_in.post(f"/requests/{theirs.id}/decline", data={"csrf_token": page_token(signed_in)})
        assert response.status_code == 404
        assert "text/html" in response.headers["Content-Type"]
        assert status_of(db_session, theirs) is RequestStatus.PENDING


def test_finished_requests_offer_report_and_block(client, db_session) -> None:
    from app.db import utcnow
    from app.models import RequestStatus
    from tests.conftest import login
    from tests.factories import CallRequestFactory, TransactionFactory, UserFactory

    seller = UserFactory()
    done = CallRequestFactory(
        transaction=TransactionFactory(seller=seller), status=RequestStatus.COMPLETED, ended_at=utcnow()
    )
    pending = CallRequestFactory(transaction=TransactionFactory(seller=seller))
    login(client, seller)
    page = client.get("/requests").get_data(as_text=True)
    assert f'action="/requests/{done.id}/block"' in page
    assert f'href="/requests/{done.id}/report"' in page
    assert f'action="/requests/{pending.id}/block"' not in page

    response = client.post(f"/requests/{done.id}/block", data={"csrf_token": page_token(client), "back": "/requests"})
    assert response.status_code == 303
    from app.services.blocks import is_blocked

    assert is_blocked(db_session, seller.id, done.buyer_email)


class TestDeclineMessage:
    def test_the_message_goes_into_the_buyers_email_only(self, signed_in, seller, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        from app.models import EventLog, OutboxEmail

        call_request = CallRequestFactory(transaction__seller=seller)
        response = signed_in.post(
            f"/requests/{call_request.id}/decline",
            data={"csrf_token": page_token(signed_in), "back": "dashboard", "message": "  Fully booked this week.\n"},
        )
        assert response.status_code == 303 and response.headers["Location"].endswith("/dashboard")
        assert status_of(db_session, call_request) is RequestStatus.DECLINED
        email = db_session.query(OutboxEmail).filter_by(template="request_declined_buyer").one()
        assert email.context["seller_message"] == "Fully booked this week."
        event = db_session.query(EventLog).filter_by(type="request.declined").one()
        assert event.payload == {"message": True}  # that there was one, never its words

    def test_a_message_too_long_is_refused_and_nothing_moves(self, signed_in, seller, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)
        response = signed_in.post(
            f"/requests/{call_request.id}/decline",
            data={"csrf_token": page_token(signed_in), "message": "x" * 501},
            follow_redirects=True,
        )
        assert "Keep the message under 500 characters." in response.get_data(as_text=True)
        assert status_of(db_session, call_request) is RequestStatus.PENDING

    def test_the_api_takes_the_message_too(self, app, signed_in, seller, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        from app.models import OutboxEmail

        call_request = CallRequestFactory(transaction__seller=seller)
        token = page_token(signed_in)
        answer = signed_in.post(
            f"/api/requests/{call_request.id}/decline", json={"message": "Sorry!"}, headers={"X-CSRFToken": token}
        )
        assert answer.status_code == 200 and answer.get_json()["request"]["status"] == "DECLINED"
        email = db_session.query(OutboxEmail).filter_by(template="request_declined_buyer").one()
        assert email.context["seller_message"] == "Sorry!"
        wrong = CallRequestFactory(transaction__seller=seller)
        refused = signed_in.post(
            f"/api/requests/{wrong.id}/decline", json={"message": 5}, headers={"X-CSRFToken": token}
        )
        assert refused.status_code == 422 and status_of(db_session, wrong) is RequestStatus.PENDING

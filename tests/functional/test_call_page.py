"""``/call/<id>?t=``: the room for the right party, a 403 page for a wrong or expired link, and
"this call has ended" afterwards."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest

from app.db import utcnow
from app.models import CancelReason, RequestStatus
from app.services.calls import join_token
from tests.call_helpers import SECRET_KEY, accepted_call


def page(client, call, party=None, token=None):  # type: ignore[no-untyped-def]
    token = token if token is not None else join_token(SECRET_KEY, call, party)
    return client.get(f"/call/{call.id}?t={token}")


class TestTheRoom:
    def test_the_buyer_gets_the_built_in_room(self, client, db_session) -> None:
        call = accepted_call(seller_name="Ada Lovelace")
        response = page(client, call, "buyer")

        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert f'data-request-id="{call.id}"' in html
        assert 'data-party="buyer"' in html
        assert 'data-provider="builtin"' in html
        assert "Your call with Ada Lovelace" in html
        assert "Waiting for Ada Lovelace" in html
        assert 'id="local-video"' in html and 'id="join-button"' in html
        # The buyer may end early too, and is told before that it does not change the price.
        assert 'data-confirm="End the call now for both of you? Ending early does not change the price."' in html
        assert "/static/js/call.js" in html and "daily-room.js" not in html

    def test_the_seller_can_end_early(self, client, db_session) -> None:
        html = page(client, accepted_call(), "seller").get_data(as_text=True)
        assert 'data-party="seller"' in html
        assert 'id="end-button"' in html
        assert "Waiting for your buyer" in html

    def test_the_sellers_title_names_the_buyer_and_shows_their_note(self, client, db_session) -> None:
        call = accepted_call()
        call.note = "Pricing <b>help</b>"
        db_session.flush()
        html = page(client, call, "seller").get_data(as_text=True)
        assert f'<h1 class="call-title">Your call with {call.buyer_email}</h1>' in html
        assert "Their note:</span> Pricing &lt;b&gt;help&lt;/b&gt;" in html
        assert "Their note" not in page(client, call, "buyer").get_data(as_text=True)

    def test_the_link_is_never_cached_or_leaked_as_a_referer(self, client, db_session) -> None:
        response = page(client, accepted_call(), "buyer")
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"

    def test_no_inline_script_or_style(self, client, db_session) -> None:
        response = page(client, accepted_call(), "buyer")
        html = response.get_data(as_text=True)
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", html))
        assert "style=" not in html and "<style" not in html

    def test_the_script_files_exist(self, client, db_session) -> None:
        for path in ("/static/js/call.js", "/static/js/daily-room.js", "/static/css/call.css"):
            response = client.get(path)
            assert response.status_code == 200, path
            response.close()


class TestRefused:
    def test_a_wrong_token_gets_the_403_page(self, client, db_session) -> None:
        response = page(client, accepted_call(), token="not-the-token")
        assert response.status_code == 403
        assert "not valid" in response.get_data(as_text=True)

    def test_a_token_for_another_call_gets_the_403_page(self, client, db_session) -> None:
        call, other = accepted_call(), accepted_call()
        response = page(client, call, token=join_token(SECRET_KEY, other, "buyer"))
        assert response.status_code == 403

    def test_no_token_gets_the_403_page(self, client, db_session) -> None:
        assert client.get(f"/call/{accepted_call().id}").status_code == 403

    @pytest.mark.parametrize("request_id", ["nope", str(uuid.uuid4())])
    def test_an_unknown_call_gets_the_403_page(self, client, db_session, request_id) -> None:
        response = client.get(f"/call/{request_id}?t=anything")
        assert response.status_code == 403

    def test_an_expired_link_gets_the_403_page(self, client, db_session) -> None:
        call = accepted_call(now=utcnow() - timedelta(minutes=16))  # the 15-minute window has passed
        response = page(client, call, "buyer")
        assert response.status_code == 403
        assert "expired" in response.get_data(as_text=True)
        assert response.headers["Cache-Control"] == "no-store"


class TestAfterTheEnd:
    def test_a_completed_call_says_it_has_ended(self, client, db_session) -> None:
        call = accepted_call()
        call.status, call.started_at = RequestStatus.COMPLETED, utcnow() - timedelta(minutes=6)
        call.ends_at, call.ended_at = utcnow() - timedelta(minutes=1), utcnow() - timedelta(minutes=1)
        db_session.flush()

        for party in ("buyer", "seller"):
            response = page(client, call, party)
            assert response.status_code == 410
            html = response.get_data(as_text=True)
            assert "This call has ended" in html
            assert "join-button" not in html

    def test_a_call_past_its_end_has_ended_even_before_the_sweep(self, client, db_session) -> None:
        call = accepted_call()
        call.started_at, call.ends_at = utcnow() - timedelta(minutes=6), utcnow() - timedelta(seconds=1)
        db_session.flush()
        assert page(client, call, "buyer").status_code == 410

    def test_a_seller_no_show_tells_the_buyer_about_the_refund(self, client, db_session) -> None:
        call = accepted_call()
        call.status, call.cancel_reason = RequestStatus.CANCELLED, CancelReason.SELLER_NO_SHOW
        db_session.flush()
        buyer = page(client, call, "buyer").get_data(as_text=True)
        seller = page(client, call, "seller").get_data(as_text=True)
        assert "did not take place" in buyer and "refunded" in buyer
        assert "You did not join in time" in seller

"""The built-in room in two real Chromiums: pre-join preview, both join, WebRTC connects through the
app's Redis signaling, the countdown runs from the server's clock, and both pages hang up at the
end while the server records it. A third window with the buyer's link is refused."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import db, utcnow
from app.integrations.video import BuiltinVideo
from app.models import CallRequest, PaymentState, Profile, RequestStatus, Role, Transaction, User
from app.services import calls
from app.services.calls import CallConfig
from tests.e2e.browser.conftest import run_axe

DURATION = 8  # the live stack's CALL_DURATION_SECONDS


def make_call(settings, url: str) -> tuple[uuid.UUID, dict[str, str]]:  # type: ignore[no-untyped-def]
    """An accepted, paid request with its room, committed for the live stack to see."""
    config = CallConfig(settings.secret_key, url, DURATION)
    tag = uuid.uuid4().hex[:10]
    with db.session_scope() as session:
        seller = User(
            email=f"seller-{tag}@example.com", password_hash="!", role=Role.SELLER, email_verified_at=utcnow()
        )
        session.add(seller)
        session.flush()
        session.add(Profile(user_id=seller.id, slug=f"room-{tag}", display_name="Ada Lovelace"))
        transaction = Transaction(
            seller_id=seller.id,
            buyer_email=f"buyer-{tag}@example.org",
            stripe_checkout_session_id=f"cs_test_{tag}",
            stripe_payment_intent_id=f"pi_test_{tag}",
            gross_cents=1000,
            platform_fee_cents=200,
            net_cents=800,
            currency="usd",
            payment_state=PaymentState.CAPTURED,
        )
        call = CallRequest(
            seller_id=seller.id,
            transaction=transaction,
            buyer_email=transaction.buyer_email,
            status=RequestStatus.ACCEPTED,
            expires_at=utcnow() + timedelta(days=1),
            accepted_at=utcnow(),
            join_deadline=utcnow() + timedelta(seconds=120),
            join_key=secrets.token_urlsafe(32),
        )
        session.add(call)
        session.flush()
        calls.provision_room(session, call.id, provider=BuiltinVideo(url), config=config, now=utcnow())
        links = {party: calls.join_url(url, settings.secret_key, call, party) for party in ("buyer", "seller")}
        return call.id, links  # type: ignore[return-value]


def wait_js(page, expression: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``expression`` until it is true. (Playwright's wait_for_function evaluates a string
    with eval, which the page's CSP rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(100)


def watch(page, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)


@pytest.fixture
def room(live, settings):  # type: ignore[no-untyped-def]
    return make_call(settings, live.url)


def test_two_browsers_meet_and_the_room_hangs_up_on_time(live, room, new_context, artifacts) -> None:
    call_id, links = room
    problems: list[str] = []
    seller, buyer = new_context().new_page(), new_context().new_page()
    for page in (seller, buyer):
        watch(page, problems)

    buyer.goto(links["buyer"])
    buyer.locator("#join-button:enabled").wait_for(timeout=30000)
    assert buyer.locator("#local-video").evaluate("video => video.srcObject !== null")  # the camera preview
    assert "Waiting for Ada Lovelace" in buyer.locator(".remote-placeholder").inner_text()
    assert run_axe(buyer) == []
    buyer.screenshot(path=str(artifacts / "call-prejoin.png"), full_page=True)

    seller.goto(links["seller"])
    seller.locator("#join-button:enabled").click(timeout=30000)
    seller.locator("#call-status", has_text="Waiting for your buyer").wait_for()
    buyer.locator("#join-button").click()

    for page in (seller, buyer):
        # Media flows both ways: the other party's video has frames; both pages say so, and the
        # clock starts (the warning shows: under a minute left).
        wait_js(page, "document.getElementById('remote-video').videoWidth > 0")
        wait_js(page, "!document.getElementById('call-warning').hidden", timeout=10)
        assert re.fullmatch(r"0:0[0-8]", page.locator("#call-countdown").inner_text())
        assert page.locator("#call-warning").is_visible()  # under a minute left
        assert page.locator("#join-button").is_hidden() and page.locator("#leave-button").is_visible()
        assert page.locator("#remote-placeholder").is_hidden()
    assert seller.locator("#end-button").is_visible()
    assert buyer.locator("#end-button").is_visible()  # either may end early; the seller then refunds the rest
    seller.screenshot(path=str(artifacts / "call-live-seller.png"), full_page=True)

    for page in (seller, buyer):
        page.locator("#call-ended").wait_for(state="visible", timeout=(DURATION + 8) * 1000)
        assert page.locator("#call-countdown").inner_text() == "0:00"
        assert page.evaluate("document.getElementById('remote-video').srcObject") is None
        assert page.locator(".call-stage").is_hidden() and page.locator(".call-controls").is_hidden()
    buyer.screenshot(path=str(artifacts / "call-ended-buyer.png"), full_page=True)

    with db.session_scope() as session:
        call = session.scalar(select(CallRequest).where(CallRequest.id == call_id))
        assert call.status == RequestStatus.COMPLETED
        assert call.ends_at - call.started_at == timedelta(seconds=DURATION)
        assert (call.ended_at - call.ends_at).total_seconds() < 2
    assert [p for p in problems if "status of 409" not in p] == []


def test_the_seller_ends_early_and_a_third_window_is_refused(live, room, new_context) -> None:
    call_id, links = room
    seller, buyer, intruder = (new_context().new_page() for _ in range(3))
    for page, link in ((seller, links["seller"]), (buyer, links["buyer"])):
        page.goto(link)
        page.locator("#join-button:enabled").click(timeout=30000)
    wait_js(buyer, "document.getElementById('remote-video').videoWidth > 0")

    intruder.goto(links["buyer"])  # the buyer's link, forwarded
    intruder.locator("#join-button:enabled").click(timeout=30000)
    intruder.locator("#call-status", has_text="already open in another window").wait_for()

    seller.once("dialog", lambda dialog: dialog.accept())
    seller.locator("#end-button").click()
    for page in (seller, buyer):
        page.locator("#call-ended").wait_for(state="visible", timeout=10000)
    with db.session_scope() as session:
        call = session.scalar(select(CallRequest).where(CallRequest.id == call_id))
        assert (call.status, call.ended_by) == (RequestStatus.COMPLETED, "seller")

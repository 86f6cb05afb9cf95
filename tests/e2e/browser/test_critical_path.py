"""The product's critical path in two real Chromiums, a seller's and a buyer's, against the whole
stack (gunicorn, a Celery worker and beat, the built-in checkout, room and mailbox).

Sign-up and verification, profile with a photo, paying on the paywall, the request arriving on
the dashboard without a reload, accept, both in the room with each other's video playing, the
server's hard stop, the rating, the balance and every email: one test, because each step needs
the one before it. Each step leaves a numbered screenshot in the run's artifacts folder.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.db import db
from app.formats import format_money
from app.models import CallRequest, LedgerEntry, PaymentState, Rating, RequestStatus
from app.services.fees import split_fee
from tests.e2e.browser import pages
from tests.e2e.browser.conftest import ARTIFACTS

PRICE_CENTS = 2500
DURATION = 8  # the live stack's CALL_DURATION_SECONDS
END_BOUND_SECONDS = 3  # the ETA task and a 1 s sweep both aim at ends_at
NOTE = "How should I price my course?"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Scenario:
    """The two people, their addresses, and what the run has gathered so far."""

    url: str
    seller: Any  # Playwright pages
    buyer: Any
    mailbox: pages.Mailbox
    shot: pages.Shots
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def seller_email(self) -> str:
        return f"ada-{self.tag}@example.com"

    @property
    def buyer_email(self) -> str:
        return f"buyer-{self.tag}@example.org"

    @property
    def slug(self) -> str:
        return f"ada-{self.tag}"


def seller_gets_ready(s: Scenario) -> None:
    """Sign-up, the verification link from the mailbox, name, price and photo; then the dashboard."""
    pages.sign_up(s.seller, s.url, s.seller_email)
    s.shot(s.seller, "seller-signed-up")
    s.seller.goto(pages.link_in(s.mailbox.wait_for(s.seller_email, "verify_email"), "/verify-email/"))
    s.seller.get_by_text("Your email is confirmed.").wait_for()
    s.shot(s.seller, "seller-verified")
    pages.save_profile(s.seller, s.url, name="Ada Lovelace", price="25", slug=s.slug)
    pages.upload_photo(s.seller, pages.png_photo())
    assert s.seller.locator("img.avatar").evaluate("img => img.complete && img.naturalWidth > 0")
    s.shot(s.seller, "seller-profile")
    s.seller.goto(f"{s.url}/dashboard")
    s.seller.get_by_text("Buyers can book calls with you now.").wait_for()
    s.seller.evaluate("() => { window.sameDocument = true; }")  # lost if the page is ever reloaded


def buyer_pays(s: Scenario) -> str:
    """The paywall (with the photo), email and note, the built-in checkout, the status page.
    Returns the Checkout Session id."""
    s.buyer.goto(f"{s.url}/u/{s.slug}")
    assert s.buyer.get_by_role("img", name="Photo of Ada Lovelace").evaluate("img => img.naturalWidth") > 0
    assert s.buyer.locator(".price").inner_text() == format_money(PRICE_CENTS, "usd")
    s.shot(s.buyer, "buyer-paywall")
    pages.request_call(s.buyer, s.url, s.slug, email=s.buyer_email, note=NOTE)
    assert s.buyer.get_by_text("Test mode").is_visible()
    s.shot(s.buyer, "buyer-checkout")
    session_id = pages.pay(s.buyer)
    pages.status_says(s.buyer, "pending")
    assert "Waiting for Ada Lovelace" in s.buyer.locator("h1:visible").inner_text()
    s.shot(s.buyer, "buyer-status-pending")
    return session_id


def seller_accepts(s: Scenario) -> None:
    """The request arrives on the open dashboard by itself; accept; the buyer's page follows."""
    item = s.seller.locator("#request-list li.pending", has_text=s.buyer_email)
    item.wait_for(timeout=30000)
    assert s.seller.evaluate("() => window.sameDocument") is True
    assert NOTE in item.inner_text()
    s.shot(s.seller, "seller-dashboard-request")
    item.get_by_role("button", name="Accept").click()
    s.seller.locator(".flash", has_text="Accepted").wait_for()
    # The call to join is on the dashboard at once, with its Join button.
    s.seller.locator("#calls li", has_text=s.buyer_email).get_by_role("link", name="Join call").wait_for()
    s.shot(s.seller, "seller-accepted")
    pages.status_says(s.buyer, "accepted")
    s.shot(s.buyer, "buyer-status-accepted")


def both_meet_until_the_server_ends_it(s: Scenario) -> None:
    """Both join (the buyer from the email, the seller from the requests page), see each other's
    video playing and the countdown running, and are hung up on at the end."""
    buyer_link = pages.link_in(s.mailbox.wait_for(s.buyer_email, "call_ready_buyer"), "/call/")
    s.seller.goto(f"{s.url}/requests")
    seller_link = s.seller.get_by_role("link", name="Join call").get_attribute("href")
    assert seller_link and seller_link != buyer_link
    s.seller.goto(seller_link)
    s.buyer.goto(buyer_link)
    for page in (s.seller, s.buyer):
        page.locator("#join-button:enabled").click()
    for page in (s.seller, s.buyer):
        width, advanced = pages.wait_for_remote_video(page)
        assert width > 0 and advanced > 0.5
        page.locator("#call-countdown", has_text=re.compile(r"^0:0[0-7]$")).wait_for()
    s.shot(s.seller, "call-seller")
    s.shot(s.buyer, "call-buyer")
    for page in (s.seller, s.buyer):
        page.locator("#call-ended").wait_for(state="visible", timeout=(DURATION + 15) * 1000)
        assert "This call has ended" in page.locator("#call-ended").inner_text()
    s.shot(s.seller, "call-ended-seller")
    s.shot(s.buyer, "call-ended-buyer")


def the_call_ended_on_time(s: Scenario, session_id: str) -> uuid.UUID:
    """The database and the seller's API agree: completed, ended within the bound of ends_at."""
    with db.session_scope() as session:
        call = session.scalar(select(CallRequest).where(CallRequest.buyer_email == s.buyer_email))
        call_id, ends_at, ended_at = call.id, call.ends_at, call.ended_at
        assert call.status == RequestStatus.COMPLETED
        assert ends_at - call.started_at == timedelta(seconds=DURATION)
        assert 0 <= (ended_at - ends_at).total_seconds() < END_BOUND_SECONDS
        assert call.transaction.payment_state == PaymentState.CAPTURED
        assert call.transaction.stripe_checkout_session_id == session_id
    listed = s.seller.request.get(f"{s.url}/api/requests?status=COMPLETED").json()["requests"]
    assert [(r["id"], parse_time(r["endedAt"])) for r in listed] == [(str(call_id), ended_at)]
    return call_id


def buyer_rates_and_seller_is_paid(s: Scenario, call_id: uuid.UUID, fee_bps: int) -> None:
    # From the end screen itself (the same link as the email's).
    rate_link = s.buyer.locator("#call-rate a")
    assert rate_link.is_visible()
    assert rate_link.get_attribute("href") in pages.link_in(
        s.mailbox.wait_for(s.buyer_email, "call_completed_buyer"), "/rate/"
    )
    rate_link.click()
    s.buyer.get_by_label("5 stars").check()
    s.buyer.get_by_role("button", name="Send rating").click()
    s.buyer.locator("#rating-saved", has_text="5 out of 5").wait_for()
    s.shot(s.buyer, "buyer-rated")

    fee, net = split_fee(PRICE_CENTS, fee_bps)
    assert fee + net == PRICE_CENTS and fee > 0
    s.mailbox.wait_for(s.seller_email, "call_completed_seller")
    s.seller.goto(f"{s.url}/balance")
    assert s.seller.locator('[data-balance="available"]').inner_text() == format_money(net, "usd")
    s.shot(s.seller, "seller-balance")
    with db.session_scope() as session:
        earnings = session.scalars(select(LedgerEntry.amount_cents).where(LedgerEntry.call_request_id == call_id))
        assert list(earnings) == [net]
        assert session.scalar(select(Rating.stars).where(Rating.call_request_id == call_id)) == 5


def test_a_seller_sells_a_call_and_a_buyer_has_it(live, settings, new_context, artifacts) -> None:
    problems: list[str] = []
    s = Scenario(
        live.url,
        new_context().new_page(),
        new_context().new_page(),
        pages.Mailbox(live.url),
        pages.Shots(artifacts, "critical"),
    )
    for page in (s.seller, s.buyer):
        pages.watch_errors(page, problems)

    seller_gets_ready(s)
    session_id = buyer_pays(s)
    seller_accepts(s)
    both_meet_until_the_server_ends_it(s)
    call_id = the_call_ended_on_time(s, session_id)
    buyer_rates_and_seller_is_paid(s, call_id, settings.platform_fee_bps)

    # Both got the right emails, each exactly once, all delivered.
    assert s.mailbox.templates(s.seller_email) == ["call_completed_seller", "request_created_seller", "verify_email"]
    assert s.mailbox.templates(s.buyer_email) == ["call_completed_buyer", "call_ready_buyer", "payment_received_buyer"]
    assert all(e["status"] == "sent" for e in s.mailbox.emails(s.seller_email) + s.mailbox.emails(s.buyer_email))
    assert problems == []
    assert len(s.shot.taken) == 15 and all(path.parent == ARTIFACTS for path in s.shot.taken)

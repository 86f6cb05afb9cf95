"""The ways a call does not happen, in the browser: the seller declines, nobody answers in time, and
someone opens the room with a link that is not theirs. In each one the buyer is told plainly and
the hold on the card is released, never captured."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from app.models import CallRequest, CancelReason, PaymentState, RequestStatus
from tests.e2e.browser import pages
from tests.e2e.browser.conftest import LiveStack, separate_stack

NOT_CHARGED = "Your card was not charged: the hold on it has been released."


def request_of(buyer_email: str, engine: Engine | None = None) -> CallRequest:
    with pages.unit_of_work(engine) as session:
        call = session.scalar(select(CallRequest).where(CallRequest.buyer_email == buyer_email))
        session.expunge(call.transaction)
        session.expunge(call)
        return call


def wait_for_payment_state(
    buyer_email: str, state: PaymentState, engine: Engine | None = None, *, timeout: float = 20
) -> CallRequest:
    """The buyer's request once its payment reaches ``state`` (a task moves it after the page says so)."""
    deadline = time.monotonic() + timeout
    while (call := request_of(buyer_email, engine)).transaction.payment_state != state:
        assert time.monotonic() < deadline, f"payment still {call.transaction.payment_state} after {timeout} s"
        time.sleep(0.3)
    return call


def pay_for_a_call(buyer, url: str, slug: str, shot: pages.Shots) -> str:  # type: ignore[no-untyped-def]
    """The buyer pays on ``slug``'s paywall and waits on the status page; returns their email."""
    email = f"buyer-{uuid.uuid4().hex[:8]}@example.org"
    pages.request_call(buyer, url, slug, email=email, note="A quick question")
    pages.pay(buyer)
    shot(buyer, "buyer-paid")
    return email


def test_a_declined_request_tells_the_buyer_they_were_not_charged(live, new_context, artifacts) -> None:
    seller_email, slug = pages.seed_seller(name="Grace Hopper")
    shot, problems = pages.Shots(artifacts, "decline"), []
    seller, buyer = new_context().new_page(), new_context().new_page()
    for page in (seller, buyer):
        pages.watch_errors(page, problems)
    pages.log_in(seller, live.url, seller_email)
    buyer_email = pay_for_a_call(buyer, live.url, slug, shot)
    pages.status_says(buyer, "pending")

    pages.decline_from_dashboard(seller, buyer_email, message="Fully booked this week, sorry!")
    shot(seller, "seller-declined")

    pages.status_says(buyer, "declined", timeout=30)
    assert buyer.get_by_text(NOT_CHARGED, exact=True).is_visible()
    assert "Grace Hopper declined your request" in buyer.locator("h1:visible").inner_text()
    shot(buyer, "buyer-not-charged")
    email = pages.Mailbox(live.url).wait_for(buyer_email, "request_declined_buyer")
    assert "your card was not charged" in email["subject"]
    assert "Fully booked this week, sorry!" in email["textBody"]  # the seller's message reached them
    call = wait_for_payment_state(buyer_email, PaymentState.VOIDED)
    assert call.status == RequestStatus.DECLINED
    assert problems == []


@pytest.fixture(scope="module")
def short_ttl(settings, artifacts) -> Iterator[tuple[LiveStack, Engine]]:  # type: ignore[no-untyped-def]
    """A separate deployment whose requests expire after a few seconds."""
    with separate_stack(settings, artifacts / "logs-short-ttl", REQUEST_TTL_SECONDS="6") as stack_and_engine:
        yield stack_and_engine


def test_an_unanswered_request_expires_and_releases_the_hold(short_ttl, new_context, artifacts) -> None:
    stack, engine = short_ttl
    _, slug = pages.seed_seller(name="Katherine Johnson", engine=engine)
    shot, problems = pages.Shots(artifacts, "expiry"), []
    buyer = new_context().new_page()
    pages.watch_errors(buyer, problems)
    buyer_email = pay_for_a_call(buyer, stack.url, slug, shot)

    pages.status_says(buyer, "cancelled", timeout=45)
    assert buyer.get_by_text(f"Katherine Johnson did not answer in time. {NOT_CHARGED}", exact=True).is_visible()
    shot(buyer, "buyer-expired")
    mailbox = pages.Mailbox(stack.url)
    mailbox.wait_for(buyer_email, "request_expired_buyer")
    call = wait_for_payment_state(buyer_email, PaymentState.VOIDED, engine)
    assert (call.status, call.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.EXPIRED)
    assert (call.expires_at - call.created_at).total_seconds() == pytest.approx(6, abs=1)
    assert mailbox.templates(buyer_email) == ["payment_received_buyer", "request_expired_buyer"]
    assert problems == []


def test_a_wrong_join_link_is_refused(live, settings, new_context, artifacts) -> None:
    seller_email, _ = pages.seed_seller()
    call_id, links = pages.seed_call(settings, live.url, seller_email)
    other_id, _ = pages.seed_call(settings, live.url, seller_email)
    page = new_context().new_page()

    assert page.goto(links["buyer"]).status == 200  # the right link opens the room
    page.locator("#join-button:enabled").wait_for()
    token = links["buyer"].split("t=", 1)[1]
    for wrong in (
        f"{live.url}/call/{call_id}?t={token[:-4]}AAAA",  # a tampered token
        f"{live.url}/call/{other_id}?t={token}",  # a real token on another call
        f"{live.url}/call/{call_id}",  # no token at all
        f"{live.url}/call/{uuid.uuid4()}?t={token}",  # a call that does not exist
    ):
        response = page.goto(wrong)
        assert response.status == 403, wrong
        assert page.locator("h1").inner_text() == "You cannot join this call"
        assert page.locator("#join-button").count() == 0
    pages.Shots(artifacts, "wrong-link")(page, "refused")

"""A new seller is paid through Stripe Connect, in real Chromiums against the whole stack with the
built-in twin: sign-up, "Set up payouts" on the built-in onboarding page (test mode), the
``account.updated`` webhook turning payouts on, a paid call to its end, a payout request sent as
a Transfer by a worker, and the transfer seen on the balance page and in the Express dashboard."""

from __future__ import annotations

import re
import time

from sqlalchemy import select

from app.db import db
from app.formats import format_money
from app.models import PayoutRequest, PayoutStatus, PayoutTransfer, TransferState, User
from app.services.fees import split_fee
from tests.e2e.browser import pages
from tests.e2e.browser.test_critical_path import (
    Scenario,
    both_meet_until_the_server_ends_it,
    buyer_pays,
    seller_accepts,
    seller_gets_ready,
)


def reload_until(page, locator: str, *, text: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Reload until ``locator`` shows ``text``: the state arrives by webhook and worker, not by the click."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in page.locator(locator).inner_text():
            return
        time.sleep(0.5)
        page.reload()
    raise AssertionError(f"{locator} never said {text!r}: {page.locator(locator).inner_text()!r}")


def sets_up_payouts(s: Scenario) -> str:
    """The built-in onboarding, completed; returns the Connect account id."""
    s.seller.goto(f"{s.url}/payouts/setup")
    assert "Not set up" in s.seller.locator("#payout-status").inner_text()
    s.seller.get_by_role("button", name="Set up payouts").click()
    s.seller.wait_for_url(re.compile(r"/dev/connect/acct_test_\w+"))
    assert s.seller.locator(".badge", has_text="Test mode").is_visible()
    account_id = s.seller.url.split("/dev/connect/", 1)[1].split("?", 1)[0]
    s.shot(s.seller, "connect-onboarding")
    s.seller.get_by_role("button", name="Complete onboarding").click()
    s.seller.wait_for_url(re.compile(r"/payouts/setup$"))
    reload_until(s.seller, "#payout-status", text="Payouts enabled")
    assert "Payouts go to your Stripe account" in s.seller.locator("#payout-status").inner_text()
    s.shot(s.seller, "connect-enabled")
    return account_id


def is_paid_by_transfer(s: Scenario, account_id: str, net: int) -> str:
    """Asks for the whole balance; a worker sends the Transfer; the balance page shows it paid."""
    s.mailbox.wait_for(s.seller_email, "call_completed_seller")
    s.seller.goto(f"{s.url}/balance")
    assert s.seller.locator('[data-balance="available"]').inner_text() == format_money(net, "usd")
    s.seller.get_by_role("button", name="Request payout").click()
    s.seller.locator(".flash", has_text=f"Payout of {format_money(net, 'usd')} requested.").wait_for()
    reload_until(s.seller, "#payouts tbody tr:first-child", text="Paid")
    transfer_id = s.seller.locator("#payouts tbody tr:first-child [data-transfer-reference]").inner_text()
    assert transfer_id.startswith("tr_test_")
    s.shot(s.seller, "paid-by-transfer")
    with db.session_scope() as session:
        seller_id = session.scalar(select(User.id).where(User.email == s.seller_email))
        row = session.scalars(select(PayoutTransfer).where(PayoutTransfer.seller_id == seller_id)).one()
        assert (row.state, row.stripe_transfer_id, row.destination, row.amount_cents) == (
            TransferState.SENT,
            transfer_id,
            account_id,
            net,
        )
        payout = session.get(PayoutRequest, row.payout_request_id)
        assert (payout.status, payout.reference) == (PayoutStatus.PROCESSED, transfer_id)
    assert s.mailbox.wait_for(s.seller_email, "payout_transferred")["status"] == "sent"
    return transfer_id


def sees_it_in_the_express_dashboard(s: Scenario, transfer_id: str, net: int) -> None:
    s.seller.goto(f"{s.url}/payouts/setup")
    s.seller.get_by_role("button", name="Open your Stripe Express dashboard").click()
    s.seller.wait_for_url(re.compile(r"/dev/connect/acct_test_\w+"))
    row = s.seller.locator(f'.dev-transfer[data-transfer-id="{transfer_id}"]')
    assert format_money(net, "usd") in row.inner_text() and "Paid" in row.inner_text()
    s.shot(s.seller, "express-dashboard")


def test_a_new_seller_sets_up_payouts_completes_a_call_and_is_paid(live, settings, new_context, artifacts) -> None:
    problems: list[str] = []
    s = Scenario(
        live.url,
        new_context().new_page(),
        new_context().new_page(),
        pages.Mailbox(live.url),
        pages.Shots(artifacts, "connect"),
    )
    for page in (s.seller, s.buyer):
        pages.watch_errors(page, problems)

    seller_gets_ready(s)
    account_id = sets_up_payouts(s)
    s.seller.goto(f"{s.url}/dashboard")
    s.seller.evaluate("() => { window.sameDocument = true; }")
    buyer_pays(s)
    seller_accepts(s)
    both_meet_until_the_server_ends_it(s)
    _, net = split_fee(2500, settings.platform_fee_bps)
    transfer_id = is_paid_by_transfer(s, account_id, net)
    sees_it_in_the_express_dashboard(s, transfer_id, net)
    assert problems == []

"""The README's first command as a newcomer meets it: ``make run`` with nothing configured, then
one whole paid call with the demo seller it prints, in two real Chromiums. The buyer pays on
``/u/demo``, the seller logs in and accepts, both join, the server ends the call, the earning is
in the balance, the seller asks for a payout and the printed admin finds it in the queue.

Calls last 8 seconds here instead of the default 300; nothing else is set."""

from __future__ import annotations

from app.config import Settings
from app.formats import format_money
from app.services.demo import DEMO_PRICE_CENTS
from app.services.fees import split_fee
from tests.e2e.browser import pages
from tests.e2e.make_run import make_run

DURATION = 8
BUYER = "newcomer-buyer@example.org"


def whole_paid_call(url: str, pages_of, seller_login, admin_login, shot, *, duration: int) -> None:  # type: ignore[no-untyped-def]
    """The walk-through against the product at ``url``; ``pages_of(n)`` opens n browser pages, each
    in its own context. Also run by hand against a real ``make run`` (default 5-minute calls)."""
    mailbox = pages.Mailbox(url)
    seller, buyer, admin = pages_of(3)
    seller_email, seller_password = seller_login

    # The buyer pays on the printed paywall; the card is only held.
    buyer.goto(f"{url}/u/demo")
    assert buyer.locator(".price").inner_text() == format_money(DEMO_PRICE_CENTS, "usd")
    pages.request_call(buyer, url, "demo", email=BUYER, note="First call!")
    pages.pay(buyer)
    pages.status_says(buyer, "pending")
    shot(buyer, "buyer-waiting")

    # The seller logs in with the printed password and accepts from the dashboard.
    pages.log_in(seller, url, seller_email, seller_password)
    pages.accept_from_dashboard(seller, BUYER)
    pages.status_says(buyer, "accepted")

    # Both join; the server ends the call.
    buyer_link = pages.link_in(mailbox.wait_for(BUYER, "call_ready_buyer"), "/call/")
    seller.goto(f"{url}/requests")
    seller.get_by_role("link", name="Join call").click()
    buyer.goto(buyer_link)
    for page in (seller, buyer):
        page.locator("#join-button:enabled").click()
    for page in (seller, buyer):
        assert pages.wait_for_remote_video(page)[0] > 0
    shot(buyer, "in-the-call")
    for page in (seller, buyer):
        page.locator("#call-ended").wait_for(state="visible", timeout=(duration + 15) * 1000)
    shot(seller, "call-ended")

    # The earning is available; the seller asks for all of it.
    _, net = split_fee(DEMO_PRICE_CENTS, Settings.from_env({}, dotenv=False).platform_fee_bps)
    mailbox.wait_for(seller_email, "call_completed_seller")
    seller.goto(f"{url}/balance")
    assert seller.locator('[data-balance="available"]').inner_text() == format_money(net, "usd")
    seller.get_by_role("button", name="Request payout").click()
    seller.locator(".flash", has_text=f"Payout of {format_money(net, 'usd')} requested.").wait_for()
    assert seller.locator('[data-balance="available"]').inner_text() == format_money(0, "usd")
    shot(seller, "payout-requested")

    # The printed admin finds it in the payout queue.
    pages.log_in(admin, url, *admin_login)
    admin.goto(f"{url}/admin/payouts")
    queued = admin.locator(".payout-item", has_text=seller_email)
    assert format_money(net, "usd") in queued.inner_text() and "Requested" in queued.inner_text()
    shot(admin, "admin-payout-queue")


def test_a_newcomer_does_a_whole_paid_call_on_make_run(new_context, artifacts) -> None:  # type: ignore[no-untyped-def]
    problems: list[str] = []

    def pages_of(count: int) -> list:  # type: ignore[type-arg]
        opened = [new_context().new_page() for _ in range(count)]
        for page in opened:
            pages.watch_errors(page, problems)
        return opened

    with make_run(artifacts / "logs" / "make-run.log", CALL_DURATION_SECONDS=str(DURATION)) as run:
        run.wait_healthy()
        shot = pages.Shots(artifacts, "newcomer")
        whole_paid_call(run.url, pages_of, run.demo_login("seller"), run.demo_login("admin"), shot, duration=DURATION)
        assert run.stop() == 0
    assert problems == []

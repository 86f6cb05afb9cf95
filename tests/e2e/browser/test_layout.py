"""Every main page at a desktop (1280x800) and a phone (390x844) width, in real Chromium: a
screenshot of each into the run's artifacts folder, and the layout facts asserted (narrow cards
centred, nothing wider than the screen, the phone menu, the call's controls and end button on the
first screen of a phone)."""

from __future__ import annotations

import time

import pytest

from app.db import db, utcnow
from app.models import CallRequest, Checkout, CheckoutStatus, Rating, RequestStatus, Transaction
from app.services.calls import rate_url
from tests.e2e.browser import pages
from tests.e2e.browser.test_call_room import make_call, wait_js

WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const boxes = [...document.querySelectorAll('.narrow, .seller-page')]
    .filter(el => el.offsetParent !== null)
    .map(el => { const r = el.getBoundingClientRect(); return [el.className, r.left, width - r.right]; });
  return {width, scrollWidth: document.documentElement.scrollWidth, boxes};
}"""
IN_VIEW = """selector => {
  const r = document.querySelector(selector).getBoundingClientRect();
  return r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;
}"""


class Check:
    """Screenshots each page and records the layout facts that do not hold."""

    def __init__(self, artifacts, width_name: str) -> None:  # type: ignore[no-untyped-def]
        self.shots = pages.Shots(artifacts, f"layout-{width_name}")
        self.problems: list[str] = []
        self.seen: list[str] = []

    def __call__(self, page, name: str) -> None:  # type: ignore[no-untyped-def]
        page.wait_for_load_state("load")
        self.seen.append(name)
        facts = page.evaluate(LAYOUT)
        if facts["scrollWidth"] > facts["width"]:
            self.problems.append(f"{name}: scrolls sideways ({facts['scrollWidth']} > {facts['width']})")
        for cls, left, right in facts["boxes"]:
            if abs(left - right) > 2:
                self.problems.append(f"{name}: .{cls} not centred (left {left:.0f}, right {right:.0f})")
        self.shots(page, name)


def seed_pages(settings, url: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A seller with every kind of request, and the addresses of the buyer's pages."""
    email, slug = pages.seed_seller(name="Katherine Johnson")
    pages.seed_call(settings, url, email, status=RequestStatus.PENDING)
    _, live_links = pages.seed_call(settings, url, email)
    done_id, done_links = pages.seed_call(settings, url, email, status=RequestStatus.COMPLETED)
    with db.session_scope() as session:
        call = session.get(CallRequest, done_id)
        session.add(Rating(call_request_id=call.id, seller_id=call.seller_id, stars=5, comment="Brilliant, thanks!"))
        rate = rate_url(url, settings.secret_key, call)
        transaction = session.get(Transaction, call.transaction_id)
        session.add(
            Checkout(
                seller_id=call.seller_id,
                buyer_email=call.buyer_email,
                amount_cents=transaction.gross_cents,
                currency="usd",
                submission_key=f"layout-{slug}",
                stripe_checkout_session_id=transaction.stripe_checkout_session_id,
                status=CheckoutStatus.COMPLETE,
                expires_at=utcnow(),
            )
        )
        status = f"{url}/success?session_id={transaction.stripe_checkout_session_id}"
    return {
        "email": email,
        "slug": slug,
        "rate": rate,
        "status": status,
        "ended": done_links["buyer"],
        "room": live_links["buyer"],
    }


@pytest.mark.parametrize("width_name", list(WIDTHS))
def test_every_main_page_at_both_widths(live, settings, new_context, artifacts, width_name: str) -> None:
    width, height = WIDTHS[width_name]
    check = Check(artifacts, width_name)
    seeded = seed_pages(settings, live.url)
    visitor = new_context(viewport={"width": width, "height": height}).new_page()
    seller = new_context(viewport={"width": width, "height": height}).new_page()
    admin = new_context(viewport={"width": width, "height": height}).new_page()

    for path, name in (("/", "landing"), ("/signup", "signup"), ("/login", "login"), ("/terms", "terms")):
        visitor.goto(live.url + path)
        check(visitor, name)
    visitor.goto(f"{live.url}/u/{seeded['slug']}")
    check(visitor, "paywall")
    assert visitor.locator("header.site-header nav").count() == 0  # no account links on a seller's page
    pages.request_call(visitor, live.url, seeded["slug"], email="layout-buyer@example.org", note="Hello")
    check(visitor, "checkout")
    pages.pay(visitor)
    pages.status_says(visitor, "pending")
    check(visitor, "status-pending")
    for address, name in (
        (seeded["status"], "status-completed"),
        (seeded["rate"], "rate"),
        (seeded["ended"], "call-ended"),
    ):
        visitor.goto(address)
        check(visitor, name)

    pages.log_in(seller, live.url, seeded["email"])
    check(seller, "dashboard")
    for path in ("/requests", "/balance", "/profile", "/account", "/blocks", "/payouts/setup"):
        seller.goto(live.url + path)
        check(seller, path.strip("/").replace("/", "-"))

    pages.log_in(admin, live.url, pages.seed_admin())
    check(admin, "admin")

    if width_name == "phone":
        seller.goto(f"{live.url}/dashboard")
        assert seller.locator(".site-nav-wide").is_hidden()
        seller.locator(".site-nav-menu summary").click()
        seller.get_by_role("link", name="Requests", exact=True).wait_for()
        check(seller, "menu-open")
        header = seller.locator(".site-header").bounding_box()
        assert header["height"] < 80, header  # one line, not three

    assert check.problems == []
    assert len(check.seen) == 18 + (width_name == "phone")


@pytest.mark.parametrize("width_name", list(WIDTHS))
def test_the_calls_controls_and_end_button_are_on_the_first_screen(
    live, settings, new_context, artifacts, width_name: str
) -> None:
    width, height = WIDTHS[width_name]
    _, links = make_call(settings, live.url)
    seller = new_context(viewport={"width": width, "height": height}).new_page()
    buyer = new_context(viewport={"width": width, "height": height}).new_page()
    for page, party in ((seller, "seller"), (buyer, "buyer")):
        page.goto(links[party])
        page.locator("#join-button:enabled").wait_for(timeout=30000)
    for selector in ("#join-button", "#mute-button", "#camera-button"):
        assert seller.evaluate(IN_VIEW, selector), f"{selector} below the fold before joining"
    seller.locator("#join-button").click()
    buyer.locator("#join-button").click()
    seller.locator("#end-button").wait_for(state="visible", timeout=20000)
    wait_js(seller, "document.getElementById('remote-video').videoWidth > 0")
    started = time.monotonic()
    for page, controls in (
        (seller, ("#mute-button", "#camera-button", "#leave-button", "#end-button")),
        (buyer, ("#mute-button", "#camera-button", "#leave-button")),
    ):
        assert page.evaluate("() => window.scrollY") == 0
        for selector in controls:
            assert page.evaluate(IN_VIEW, selector), f"{selector} is not on the first screen at {width}x{height}"
        assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert time.monotonic() - started < 6  # measured while the 8 s call was running
    seller.screenshot(path=str(artifacts / f"layout-{width_name}-call-seller.png"))
    buyer.screenshot(path=str(artifacts / f"layout-{width_name}-call-buyer.png"))

"""Accessibility in a real browser: axe-core finds no serious or critical violation on any page a
seller, a buyer or an admin sees, in the light and in the dark colour scheme, and a buyer can go
from the paywall to a paid checkout with the keyboard alone (Tab, Enter and Space; no clicks)."""

from __future__ import annotations

import re

from app.db import db
from app.models import CallRequest, RequestStatus
from app.services.calls import rate_url
from tests.e2e.browser import pages
from tests.e2e.browser.conftest import run_axe

ADMIN_PAGES = (
    "/admin",
    "/admin/reports",
    "/admin/payouts",
    "/admin/transfers",
    "/admin/payout-accounts",
    "/admin/disputes",
    "/admin/sellers",
    "/admin/events",
    "/admin/summary",
    "/admin/erase",
)
# The focused element shows the site's focus ring (a visible outline), not the browser's nothing.
FOCUS_RING = "() => getComputedStyle(document.activeElement).outlineStyle !== 'none'"


SCHEMES = ("light", "dark")


class Audit:
    """Runs axe on each page visited, in both colour schemes (prefers-color-scheme), and keeps
    every finding, so one run reports them all."""

    def __init__(self, shots: pages.Shots):
        self.shots = shots
        self.findings: dict[str, list[dict]] = {}
        self.checked: list[str] = []

    def __call__(self, page, name: str) -> None:  # type: ignore[no-untyped-def]
        page.wait_for_load_state("load")
        self.checked.append(name)
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            violations = run_axe(page)
            if violations:
                self.findings[f"{name} ({scheme})"] = violations
            self.shots(page, f"{name}-{scheme}")
        page.emulate_media(color_scheme="light")


def tab_to(page, selector: str, *, limit: int = 30) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until the focused element matches ``selector``; it must show a focus ring."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("selector => document.activeElement.matches(selector)", selector):
            assert page.evaluate(FOCUS_RING), f"{selector} has no visible focus indicator"
            return
    raise AssertionError(f"{limit} presses of Tab never reached {selector} on {page.url}")


def test_every_page_passes_axe(live, settings, new_context, artifacts) -> None:
    audit = Audit(pages.Shots(artifacts, "axe"))
    seller_email, slug = pages.seed_seller(name="Mary Jackson")
    pages.seed_call(settings, live.url, seller_email, status=RequestStatus.PENDING)  # on the dashboard
    live_id, live_links = pages.seed_call(settings, live.url, seller_email)
    done_id, done_links = pages.seed_call(settings, live.url, seller_email, status=RequestStatus.COMPLETED)
    visitor, seller, admin = new_context().new_page(), new_context().new_page(), new_context().new_page()

    for path, name in (("/", "landing"), ("/signup", "signup"), ("/login", "login"), (f"/u/{slug}", "paywall")):
        visitor.goto(live.url + path)
        audit(visitor, name)
    visitor.goto(live_links["buyer"])
    visitor.locator("#join-button:enabled").wait_for()  # the camera preview is on
    audit(visitor, "call")
    assert visitor.goto(done_links["buyer"]).status == 410
    audit(visitor, "call-ended")
    assert visitor.goto(f"{live.url}/call/{live_id}?t=wrong").status == 403
    audit(visitor, "call-denied")
    with db.session_scope() as session:
        call = session.get(CallRequest, done_id)
        visitor.goto(rate_url(live.url, settings.secret_key, call))
    audit(visitor, "rate")
    visitor.get_by_role("link", name="Report a problem").click()
    audit(visitor, "report")

    pages.request_call(visitor, live.url, slug, email="axe-buyer@example.org", note="Hi")
    audit(visitor, "checkout")
    pages.pay(visitor)
    pages.status_says(visitor, "pending")
    audit(visitor, "status")
    visitor.goto(f"{live.url}/terms")
    audit(visitor, "terms")

    pages.log_in(seller, live.url, seller_email)
    seller.locator("#request-list li.pending").first.wait_for()
    seller.locator("#request-list details.decline-box summary").first.click()  # the decline step, open
    audit(seller, "dashboard")
    for path in ("/profile", "/requests", "/balance", "/payouts/setup", "/account", "/blocks"):
        seller.goto(live.url + path)
        audit(seller, path.strip("/").replace("/", "-"))

    pages.log_in(admin, live.url, pages.seed_admin())
    for path in ADMIN_PAGES:
        assert admin.goto(live.url + path).status == 200, path
        audit(admin, path.strip("/").replace("/", "-"))

    assert audit.findings == {}
    assert len(audit.checked) == 29


def test_a_buyer_pays_with_the_keyboard_alone(live, new_context, artifacts) -> None:
    _, slug = pages.seed_seller(name="Dorothy Vaughan")
    shot = pages.Shots(artifacts, "keyboard")
    page = new_context().new_page()
    page.goto(f"{live.url}/u/{slug}")

    tab_to(page, "#buyer_email")
    page.keyboard.type("keyboard-buyer@example.org")
    tab_to(page, "#note")
    page.keyboard.type("I only use a keyboard.")
    tab_to(page, "button[type=submit]")
    shot(page, "paywall-filled")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/dev/checkout/cs_"))
    assert run_axe(page) == []
    shot(page, "checkout")

    tab_to(page, "form[action$='/pay'] button")
    page.keyboard.press("Space")
    page.wait_for_url(re.compile(r"/success\?session_id=cs_"))
    pages.status_says(page, "pending")
    assert run_axe(page) == []
    shot(page, "status")

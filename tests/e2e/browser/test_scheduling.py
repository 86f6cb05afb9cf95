"""A call at a time that suits both, in two real Chromiums in different time zones, against the
whole stack: the seller (New York) sets their hours on the profile page with the zone the browser
gave; the buyer (Paris) proposes two times in their own wall-clock time and pays; the seller sees
those times in New York time on the dashboard and accepts the second; both then see the same
instant, each in their own zone, and the invitation comes with its .ics."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta

import requests
import vobject

from tests.e2e.browser import pages
from tests.e2e.browser.conftest import run_axe

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def proposals() -> list[datetime]:
    """Two wall-clock times the day after tomorrow in Paris (10:00 and 11:30): always ahead, always
    within the hold window, and a real instant whatever the season."""
    day = (datetime.now(PARIS) + timedelta(days=2)).date()
    return [datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS) for hour, minute in ((10, 0), (11, 30))]


def test_a_buyer_in_paris_and_a_seller_in_new_york_agree_on_one_instant(live, new_context, artifacts) -> None:  # type: ignore[no-untyped-def]
    problems: list[str] = []
    shot = pages.Shots(artifacts, "scheduling")
    mailbox = pages.Mailbox(live.url)
    seller_email, slug = pages.seed_seller(name="Ada Lovelace")
    buyer_email = f"buyer-{uuid.uuid4().hex[:8]}@example.org"
    seller = new_context(timezone_id="America/New_York", locale="en-US").new_page()
    buyer = new_context(timezone_id="Europe/Paris", locale="en-GB").new_page()
    for page in (seller, buyer):
        pages.watch_errors(page, problems)

    # The seller's hours, on the profile page: the zone comes from the browser.
    pages.log_in(seller, live.url, seller_email)
    seller.goto(f"{live.url}/profile")
    assert seller.locator("#availability-zone").input_value() == "America/New_York"
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"):
        seller.get_by_label(day, exact=True).fill("00:00-24:00")
    seller.get_by_role("button", name="Save availability").click()
    seller.locator(".flash", has_text="Availability saved.").wait_for()
    saved = seller.request.get(f"{live.url}/api/availability").json()
    assert saved["timeZone"] == "America/New_York" and len(saved["weekly"]) == 7
    shot(seller, "seller-hours")
    assert run_axe(seller) == []
    seller.goto(f"{live.url}/dashboard")

    # The buyer proposes two times in Paris time.
    first, second = proposals()
    buyer.goto(f"{live.url}/u/{slug}")
    assert buyer.locator("#time_zone").input_value() == "Europe/Paris"
    buyer.get_by_label("Your email").fill(buyer_email)
    buyer.get_by_label("At a time I propose").check()
    buyer.get_by_label("First choice").fill(first.strftime("%Y-%m-%dT%H:%M"))
    buyer.get_by_label("Second choice (optional)").fill(second.strftime("%Y-%m-%dT%H:%M"))
    shot(buyer, "buyer-proposes")
    assert run_axe(buyer) == []
    buyer.get_by_role("button", name=re.compile(r"^Request a call")).click()
    buyer.wait_for_url(re.compile(r"/dev/checkout/cs_"))
    pages.pay(buyer)
    pages.status_says(buyer, "pending")
    shot(buyer, "buyer-pending")

    # The seller sees them in New York time, on the dashboard that updates itself, and picks the second.
    item = seller.locator("#request-list li.pending", has_text=buyer_email)
    item.wait_for(timeout=30000)
    offered = item.locator("button[data-start]")
    assert [parse(offered.nth(i).get_attribute("data-start") or "") for i in range(offered.count())] == [
        first.astimezone(UTC),
        second.astimezone(UTC),
    ]
    second_ny = second.astimezone(NEW_YORK)
    shown = item.locator("ul.proposed-list li").nth(1).locator("time").inner_text()
    assert f"{second_ny:%-I}:{second_ny:%M}" in shown or f"{second_ny:%H:%M}" in shown, shown
    shot(seller, "seller-sees-proposals")
    assert run_axe(seller) == []
    offered.nth(1).click()
    booked_on_dashboard = seller.locator("#calls time.scheduled-start")
    booked_on_dashboard.wait_for(timeout=15000)
    shot(seller, "seller-booked")

    # Both see the same instant, each in their own zone.
    pages.status_says(buyer, "accepted")
    booked_for_buyer = buyer.locator("#scheduled-start")
    booked_for_buyer.wait_for()
    shot(buyer, "buyer-booked")
    instant = second.astimezone(UTC)
    assert parse(booked_for_buyer.get_attribute("datetime") or "") == instant
    assert parse(booked_on_dashboard.get_attribute("datetime") or "") == instant
    assert f"{second:%H:%M}" in booked_for_buyer.inner_text() and "Europe/Paris" in booked_for_buyer.inner_text()
    assert f"{second_ny:%H:%M}" in booked_on_dashboard.inner_text()

    # The invitation: same instant in the .ics, each party's wall-clock time in their email.
    invite = mailbox.wait_for(buyer_email, "call_scheduled_buyer")
    assert f"{second:%H:%M} (Europe/Paris)" in invite["subject"]
    [attachment] = invite["attachments"]
    calendar = vobject.readOne(requests.get(f"{live.url}{attachment['url']}", timeout=10).text)
    assert calendar.method.value == "REQUEST" and calendar.vevent.dtstart.value == instant
    seller_invite = mailbox.wait_for(seller_email, "call_scheduled_seller")
    assert f"{second_ny:%H:%M} (America/New_York)" in seller_invite["subject"]

    # The buyer's call page waits for the time, in Paris time.
    buyer.goto(pages.link_in(invite, "/call/"))
    assert f"{second:%H:%M}" in buyer.locator("#scheduled-start").inner_text()
    shot(buyer, "buyer-waiting-page")
    assert run_axe(buyer) == []
    assert problems == []

"""The call's seven emails, rendered by the real renderer from the contexts the services store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.integrations.video import BuiltinVideo
from app.models import OutboxEmail
from app.services import call_endings, calls
from app.services.calls import CallConfig
from app.services.email_delivery import jinja_renderer
from app.services.lifecycle import clock
from tests.call_helpers import accepted_call


@pytest.fixture
def render(app, settings):  # type: ignore[no-untyped-def]
    return jinja_renderer(app.jinja_env, app_url=settings.app_url)


@pytest.fixture
def config(settings) -> CallConfig:
    return CallConfig.from_settings(settings)


def outbox(session, call) -> dict[str, OutboxEmail]:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(OutboxEmail).where(OutboxEmail.dedupe_key.like(f"%:{call.id}")))
    return {row.template: row for row in rows}


def test_the_join_link_email(db_session, render, settings, config) -> None:
    call = accepted_call(room=None, seller_name="Ada Lovelace")
    calls.provision_room(db_session, call.id, provider=BuiltinVideo(settings.app_url), config=config, now=utcnow())
    email = outbox(db_session, call)["call_ready_buyer"]

    rendered = render(email.template, email.context)

    assert rendered.subject == "Ada Lovelace accepted your call — here is your link"
    link = email.context["join_url"]
    assert link in rendered.text_body and link.replace("&", "&amp;") in rendered.html_body
    assert call.join_deadline.strftime("%H:%M (UTC)") in rendered.text_body  # the zone said, explicitly
    assert "The 5-minute call starts when you are both in" in rendered.text_body
    assert "your payment is kept" in rendered.text_body  # what happens if the buyer misses the window


def test_the_end_of_call_emails(db_session, render, config) -> None:
    call = accepted_call()
    call.started_at, call.ends_at = utcnow() - timedelta(minutes=5), utcnow()
    db_session.flush()
    call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=utcnow())
    emails = outbox(db_session, call)

    buyer = render("call_completed_buyer", emails["call_completed_buyer"].context)
    seller = render("call_completed_seller", emails["call_completed_seller"].context)

    assert buyer.subject == "How was your call with Ada Lovelace?"
    assert f"/rate/{call.id}?t=" in buyer.text_body and f"/rate/{call.id}?t=" in buyer.html_body
    assert seller.subject == "Call completed — $8.00 added to your balance"
    assert call.buyer_email in seller.text_body and "$10.00" in seller.html_body


@pytest.mark.parametrize(
    "seller_joined, templates",
    [
        (False, ("seller_no_show_buyer", "seller_no_show_seller")),
        (True, ("buyer_no_show_buyer", "buyer_no_show_seller")),
    ],
)
def test_the_no_show_emails(db_session, render, settings, seller_joined, templates) -> None:
    call = accepted_call()
    if seller_joined:
        call.seller_joined_at = call.accepted_at
        db_session.flush()
    with freeze_time(call.join_deadline):
        clock.apply_no_shows(db_session, utcnow(), settings)
    emails = outbox(db_session, call)

    for template in templates:
        rendered = render(template, emails[template].context)
        assert rendered.subject
        assert "$10.00" in rendered.text_body or "$8.00" in rendered.text_body
        assert "None" not in rendered.text_body + rendered.html_body
    if not seller_joined:
        assert "refunded" in render(templates[0], emails[templates[0]].context).subject


def test_the_join_deadline_is_in_the_buyers_zone_when_they_gave_one(db_session, render, settings, config) -> None:
    call = accepted_call(room=None, seller_name="Ada Lovelace")
    call.buyer_time_zone = "Asia/Tokyo"
    db_session.flush()
    calls.provision_room(db_session, call.id, provider=BuiltinVideo(settings.app_url), config=config, now=utcnow())
    rendered = render("call_ready_buyer", outbox(db_session, call)["call_ready_buyer"].context)
    tokyo = call.join_deadline.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert f"{tokyo:%H:%M} (Asia/Tokyo)" in rendered.text_body

"""The emails of issue 19's moves, rendered by the real renderer from the contexts the services
store: a decline with the seller's message, a request the buyer withdrew, an email change."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import OutboxEmail
from app.services import email_change
from app.services.email_delivery import jinja_renderer
from app.services.lifecycle import decisions
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory


@pytest.fixture
def render(app, settings):  # type: ignore[no-untyped-def]
    return jinja_renderer(app.jinja_env, app_url=settings.app_url)


def queued(session, template: str) -> OutboxEmail:  # type: ignore[no-untyped-def]
    return session.scalars(select(OutboxEmail).where(OutboxEmail.template == template)).one()


def test_a_decline_carries_the_sellers_words_escaped(db_session, render) -> None:
    profile = ProfileFactory(display_name="Ada")
    call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
    decisions.decline_request(db_session, call.id, seller_id=profile.user_id, now=utcnow(), message="Busy <this> week.")
    rendered = render("request_declined_buyer", queued(db_session, "request_declined_buyer").context)
    assert "Ada wrote to you:" in rendered.text_body and "    Busy <this> week." in rendered.text_body
    assert "Busy &lt;this&gt; week." in rendered.html_body
    assert "the $10.00 hold on it has been released" in rendered.text_body


def test_a_decline_without_a_message_says_nothing_about_one(db_session, render) -> None:
    profile = ProfileFactory(display_name="Ada")
    call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
    decisions.decline_request(db_session, call.id, seller_id=profile.user_id, now=utcnow())
    rendered = render("request_declined_buyer", queued(db_session, "request_declined_buyer").context)
    assert "wrote to you" not in rendered.text_body and "wrote to you" not in rendered.html_body


def test_a_withdrawn_request_tells_both(db_session, render) -> None:
    profile = ProfileFactory(display_name="Ada")
    call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user), note="About engines")
    decisions.buyer_cancel_pending(db_session, call.id, now=utcnow())
    buyer = render("request_withdrawn_buyer", queued(db_session, "request_withdrawn_buyer").context)
    seller = render("request_withdrawn_seller", queued(db_session, "request_withdrawn_seller").context)
    assert buyer.subject == "You cancelled your call request to Ada"
    assert "the $10.00 hold on it has been released" in buyer.text_body
    assert seller.subject == f"{call.buyer_email} cancelled their call request"
    assert "About engines" in seller.text_body


def test_the_email_change_emails(app, db_session, render, settings) -> None:
    from tests.factories import PASSWORD, UserFactory

    user = UserFactory(email="old@example.org")
    email_change.request_email_change(
        db_session, user.id, "new@example.org", PASSWORD, now=utcnow(), app_url=settings.app_url, secret_key="k" * 40
    )
    verify = render("email_change_verify", queued(db_session, "email_change_verify").context)
    assert "/account/email/" in verify.text_body and "24 hours" in verify.text_body
    token = queued(db_session, "email_change_verify").context["confirm_url"].rsplit("/", 1)[1]
    email_change.confirm_email_change(db_session, token, secret_key="k" * 40, now=utcnow())
    changed = queued(db_session, "email_changed")
    assert changed.recipient == "old@example.org"
    told = render("email_changed", changed.context)
    assert "n***@example.org" in told.text_body and "/forgot" in told.text_body

"""The verification and reset emails render to the shared email convention."""

from __future__ import annotations

import pytest

from app.services.email_delivery import jinja_renderer

APP_URL = "https://chatlink.test"


@pytest.fixture
def render(app):  # type: ignore[no-untyped-def]
    return jinja_renderer(app.jinja_env, app_url=APP_URL)


def test_the_verification_email_carries_the_link_in_both_bodies(render) -> None:  # type: ignore[no-untyped-def]
    url = f"{APP_URL}/verify-email/abc.def.ghi"
    email = render("verify_email", {"verify_url": url})
    assert email.subject == "Confirm your email for ChatLink"
    assert url in email.text_body and "48 hours" in email.text_body
    assert f'href="{url}"' in email.html_body


def test_the_reset_email_carries_the_link_and_its_lifetime(render) -> None:  # type: ignore[no-untyped-def]
    url = f"{APP_URL}/reset/tok_-123"
    email = render("password_reset", {"reset_url": url, "expires_minutes": 60})
    assert email.subject == "Reset your ChatLink password"
    assert url in email.text_body and "60 minutes" in email.text_body
    assert f'href="{url}"' in email.html_body and "60 minutes" in email.html_body
    assert "<script" not in email.html_body

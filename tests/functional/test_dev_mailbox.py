"""The dev mailbox pages and JSON, through the Flask client."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jinja2
import pytest
from sqlalchemy.orm import Session

from app.config import PROJECT_ROOT
from app.models import EmailStatus, OutboxEmail
from app.services.outbox import queue_email
from tasks.email_delivery import send_email

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def add_email(session: Session, minutes: int, **values: object) -> OutboxEmail:
    values = {
        "recipient": "buyer@example.com",
        "template": "payment_received",
        "context": {},
        "created_at": T0 + timedelta(minutes=minutes),
        **values,
    }
    email = OutboxEmail(**values)
    session.add(email)
    session.flush()
    return email


def sent_email(session: Session, minutes: int, **values: object) -> OutboxEmail:
    defaults = {
        "status": EmailStatus.SENT,
        "subject": f"Subject {minutes}",
        "text_body": f"Hello {minutes}\nOpen http://127.0.0.1:5000/success?session_id=cs_{minutes}\n",
        "html_body": f"<p>Hello {minutes}</p>",
        "provider_message_id": f"dev-{uuid.uuid4()}",
        "sent_at": T0 + timedelta(minutes=minutes, seconds=1),
        "attempts": 1,
    }
    return add_email(session, minutes, **{**defaults, **values})


class TestMailboxList:
    def test_lists_every_email_newest_first(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        sent_email(db_session, 1, subject="Older one")
        sent_email(db_session, 2, subject="Newer one", recipient="seller@example.com")
        add_email(db_session, 3)  # still pending: not rendered yet

        response = client.get("/dev/mailbox")

        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert page.index("(not rendered yet)") < page.index("Newer one") < page.index("Older one")
        assert "seller@example.com" in page
        assert '<span class="badge badge-ok">sent</span>' in page
        assert '<span class="badge badge-warn">pending</span>' in page

    def test_subjects_are_escaped(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        sent_email(db_session, 1, subject="<script>alert(1)</script>")
        page = client.get("/dev/mailbox").get_data(as_text=True)
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    def test_an_empty_mailbox_says_so(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        assert "No emails yet" in client.get("/dev/mailbox").get_data(as_text=True)


class TestMailboxMessage:
    def test_shows_subject_recipient_status_text_and_the_html_in_a_sandboxed_frame(  # type: ignore[no-untyped-def]
        self, client, db_session: Session
    ) -> None:
        email = sent_email(db_session, 1, subject="Payment received")

        response = client.get(f"/dev/mailbox/{email.id}")

        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert "<h1>Payment received</h1>" in page
        assert "buyer@example.com" in page
        assert ">sent</span>" in page
        # The text body, with its link clickable.
        assert '<a href="http://127.0.0.1:5000/success?session_id=cs_1"' in page
        assert f'<iframe class="mailbox-html" sandbox src="/dev/mailbox/{email.id}/html"' in page
        csp = response.headers["Content-Security-Policy"]
        assert "frame-src 'self'" in csp
        assert "'none'" not in csp.split("frame-src")[1].split(";")[0]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp

    def test_the_html_body_is_served_with_its_own_restrictive_policy(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        email = sent_email(db_session, 1, html_body='<p style="color:red">Hi <a href="http://x.test/">link</a></p>')

        response = client.get(f"/dev/mailbox/{email.id}/html")

        assert response.status_code == 200
        assert response.mimetype == "text/html"
        assert response.get_data(as_text=True) == email.html_body
        csp = [d.strip() for d in response.headers["Content-Security-Policy"].split(";")]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'self'" in csp
        assert "sandbox" in csp
        assert not any(d.startswith("script-src") for d in csp)
        assert response.headers["X-Frame-Options"] == "SAMEORIGIN"

    def test_a_pending_email_is_shown_as_not_rendered_and_has_no_html_yet(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        email = add_email(db_session, 1)

        page = client.get(f"/dev/mailbox/{email.id}").get_data(as_text=True)

        assert "has not been rendered yet" in page
        assert "<iframe" not in page
        assert client.get(f"/dev/mailbox/{email.id}/html").status_code == 404

    def test_a_failed_email_shows_its_error(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        email = sent_email(db_session, 1, status=EmailStatus.FAILED, provider_message_id=None, last_error="[406] x")
        page = client.get(f"/dev/mailbox/{email.id}").get_data(as_text=True)
        assert "[406] x" in page and "badge-danger" in page

    @pytest.mark.parametrize("path", ["/dev/mailbox/{id}", "/dev/mailbox/{id}/html"])
    def test_an_unknown_email_is_404(self, client, db_session: Session, path: str) -> None:  # type: ignore[no-untyped-def]
        assert client.get(path.format(id=uuid.uuid4())).status_code == 404


class TestMailboxJson:
    def test_lists_newest_first_with_bodies_for_browser_tests(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        older = sent_email(db_session, 1)
        newer = sent_email(db_session, 2, template="welcome")

        response = client.get("/dev/mailbox.json")

        assert response.status_code == 200
        emails = response.get_json()["emails"]
        assert [e["id"] for e in emails] == [str(newer.id), str(older.id)]
        assert emails[0] == {
            "id": str(newer.id),
            "recipient": "buyer@example.com",
            "template": "welcome",
            "subject": "Subject 2",
            "status": "sent",
            "textBody": newer.text_body,
            "htmlBody": "<p>Hello 2</p>",
            "createdAt": "2026-11-25T09:02:00Z",
            "sentAt": "2026-11-25T09:02:01Z",
            "attachments": [],
        }

    def test_filters_by_recipient_and_limits(self, client, db_session: Session) -> None:  # type: ignore[no-untyped-def]
        for minute in range(3):
            sent_email(db_session, minute, recipient="ada@example.com")
        pending = add_email(db_session, 5, recipient="Bob@Example.com")

        only_bob = client.get("/dev/mailbox.json?recipient=bob@example.com").get_json()["emails"]
        two = client.get("/dev/mailbox.json?limit=2").get_json()["emails"]

        assert [e["id"] for e in only_bob] == [str(pending.id)]
        assert only_bob[0]["textBody"] is None and only_bob[0]["sentAt"] is None
        assert only_bob[0]["status"] == "pending"
        assert len(two) == 2


@pytest.mark.parametrize("path", ["/dev/mailbox", "/dev/mailbox.json", "/dev/mailbox/{id}", "/dev/mailbox/{id}/html"])
def test_not_available_when_postmark_is_configured(make_app, settings, db_session: Session, path: str) -> None:  # type: ignore[no-untyped-def]
    email = sent_email(db_session, 1)
    with_postmark = make_app(settings.replace(postmark_server_token="x"))

    response = with_postmark.test_client().get(path.format(id=email.id))

    assert response.status_code == 404
    assert b"Hello 1" not in response.data


def test_not_available_in_production(make_app, settings, db_session: Session) -> None:  # type: ignore[no-untyped-def]
    # A production app refuses to start without Postmark; this checks the second lock on its own.
    production = make_app(settings.replace(app_env="production"))
    assert production.test_client().get("/dev/mailbox.json").status_code == 404


def test_an_email_sent_by_the_task_appears_with_its_link(app, client, db_session: Session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The whole development path: queue → task (dev mailbox) → /dev/mailbox.json → the link."""
    test_templates = jinja2.FileSystemLoader(str(PROJECT_ROOT / "tests" / "templates"))
    monkeypatch.setattr(app.jinja_env, "loader", jinja2.ChoiceLoader([test_templates, app.jinja_env.loader]))
    email_id = queue_email(
        db_session, recipient="ada@example.com", template="test_message", context={"name": "Ada", "call_id": "c1"}
    )
    db_session.commit()

    with app.app_context():  # this app's, not that of the last app another test built
        send_email.apply(args=(str(email_id),))
    [listed] = client.get("/dev/mailbox.json?recipient=ada@example.com").get_json()["emails"]

    assert listed["status"] == "sent"
    assert listed["subject"] == "Hello Ada, your call is confirmed"
    assert "http://127.0.0.1:5000/calls/c1" in listed["textBody"]
    assert 'href="http://127.0.0.1:5000/calls/c1"' in client.get(f"/dev/mailbox/{email_id}/html").get_data(as_text=True)

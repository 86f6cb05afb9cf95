"""The mailer adapters: the real Postmark one against a local fake, and the dev mailbox twin."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest

from app.config import Settings
from app.integrations.email import (
    Attachment,
    DevMailbox,
    EmailDeliveryError,
    OutgoingEmail,
    PostmarkMailer,
    is_permanent_failure,
    mailer_for,
)
from tests.fakes.postmark import FakePostmark, Reply

TOKEN = "server-token-123"
SENDER = "ChatLink <no-reply@chatlink.test>"
MESSAGE = OutgoingEmail(
    email_id="6f1c1d5e-0000-4000-8000-000000000001",
    to="buyer@example.com",
    subject="Payment received",
    text_body="Hello\nhttp://127.0.0.1:5000/success\n",
    html_body="<p>Hello</p>\n",
    tag="payment_received",
)


@pytest.fixture
def postmark() -> Iterator[FakePostmark]:
    with FakePostmark() as fake:
        yield fake


def mailer(fake: FakePostmark, **options: float) -> PostmarkMailer:
    return PostmarkMailer(TOKEN, api_base=fake.url, sender=SENDER, **options)


class TestPostmarkMailer:
    def test_sends_exactly_the_expected_json_and_token(self, postmark: FakePostmark) -> None:
        postmark.respond(Reply.ok("msg-1"))

        assert mailer(postmark).send(MESSAGE) == "msg-1"

        [request] = postmark.requests
        assert (request.method, request.path) == ("POST", "/email")
        assert request.headers["X-Postmark-Server-Token"] == TOKEN
        assert request.headers["Content-Type"] == "application/json"
        body = request.json
        assert body["From"] == SENDER
        assert body["To"] == "buyer@example.com"
        assert body["Subject"] == "Payment received"
        assert body["TextBody"] == MESSAGE.text_body
        assert body["HtmlBody"] == MESSAGE.html_body
        assert body["MessageStream"] == "outbound"
        assert body["Tag"] == "payment_received"
        assert body["Metadata"] == {"email_id": MESSAGE.email_id}
        assert body["Attachments"] == []

    def test_sends_attachments_in_postmarks_shape(self, postmark: FakePostmark) -> None:
        invite = Attachment("chatlink-call.ics", "text/calendar; charset=utf-8; method=REQUEST", "QkVHSU46VkNBTEVOREFS")
        postmark.respond(Reply.ok("msg-2"))

        assert mailer(postmark).send(dataclasses.replace(MESSAGE, attachments=(invite,))) == "msg-2"

        assert postmark.requests[0].json["Attachments"] == [
            {
                "Name": "chatlink-call.ics",
                "Content": "QkVHSU46VkNBTEVOREFS",
                "ContentType": "text/calendar; charset=utf-8; method=REQUEST",
            }
        ]

    def test_a_path_in_the_api_base_is_dropped_by_postmarker(self, postmark: FakePostmark) -> None:
        PostmarkMailer(TOKEN, api_base=postmark.url + "/some/path", sender=SENDER).send(MESSAGE)
        assert [r.path for r in postmark.requests] == ["/email"]

    @pytest.mark.parametrize(
        ("reply", "permanent", "status", "error_code"),
        [
            (
                Reply.error(422, 406, "You tried to send to a recipient that has been marked as inactive."),
                True,
                422,
                406,
            ),
            (Reply.error(422, 300, "Invalid email request"), True, 422, 300),
            (Reply.error(422, 1234, "Some other validation error"), True, 422, 1234),
            (Reply.error(401, 10, "Bad or missing API token"), False, 401, 10),
            (Reply.error(422, 405, "Not allowed to send"), False, 422, 405),
            (Reply.error(429, 0, "Rate limit exceeded"), False, 429, 0),
            (Reply.error(500, 0, "Internal server error"), False, 500, 0),
            (Reply(503, b"Service Unavailable"), False, 503, None),
            (Reply(502, {"unexpected": "shape"}), False, 502, None),
            (Reply(413, b"Request Entity Too Large"), True, 413, None),
        ],
    )
    def test_classifies_failures(
        self, postmark: FakePostmark, reply: Reply, permanent: bool, status: int, error_code: int | None
    ) -> None:
        postmark.respond(reply)

        with pytest.raises(EmailDeliveryError) as raised:
            mailer(postmark).send(MESSAGE)

        assert raised.value.permanent is permanent
        assert raised.value.status == status
        assert raised.value.error_code == error_code
        assert len(postmark.requests) == 1

    def test_a_dropped_connection_is_transient(self, postmark: FakePostmark) -> None:
        postmark.respond(Reply(disconnect=True))

        with pytest.raises(EmailDeliveryError) as raised:
            mailer(postmark).send(MESSAGE)

        assert raised.value.permanent is False
        assert raised.value.status is None

    def test_a_timeout_is_transient(self, postmark: FakePostmark) -> None:
        postmark.respond(Reply.ok(), Reply(delay=1.0))
        mailer(postmark, timeout=0.3).send(MESSAGE)  # warm up: the server thread answers

        with pytest.raises(EmailDeliveryError) as raised:
            mailer(postmark, timeout=0.3).send(MESSAGE)

        assert raised.value.permanent is False
        assert "Timeout" in str(raised.value)

    def test_a_refused_connection_is_transient(self) -> None:
        with FakePostmark() as fake:
            url = fake.url
        with pytest.raises(EmailDeliveryError) as raised:
            PostmarkMailer(TOKEN, api_base=url, sender=SENDER, timeout=2).send(MESSAGE)
        assert raised.value.permanent is False

    def test_an_unreadable_success_is_not_retried(self, postmark: FakePostmark) -> None:
        # Postmark most likely accepted it; a retry could deliver the email twice.
        postmark.respond(Reply(200, b"<html>ok</html>"))

        with pytest.raises(EmailDeliveryError) as raised:
            mailer(postmark).send(MESSAGE)

        assert raised.value.permanent is True


@pytest.mark.parametrize(
    ("status", "error_code", "permanent"),
    [(None, None, False), (408, None, False), (400, None, True), (404, None, True), (599, None, False)],
)
def test_is_permanent_failure(status: int | None, error_code: int | None, permanent: bool) -> None:
    assert is_permanent_failure(status, error_code) is permanent


class TestDevMailbox:
    def test_logs_subject_and_text_body_with_the_recipient_masked(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger="app.integrations.email"):
            message_id = DevMailbox(app_url="http://127.0.0.1:5000").send(MESSAGE)

        assert message_id.startswith("dev-")
        assert message_id != DevMailbox().send(MESSAGE)
        [record] = [r for r in caplog.records if r.name == "app.integrations.email"]
        text = record.getMessage()
        assert "b***@example.com" in text
        assert "buyer@example.com" not in text
        assert "Subject: Payment received" in text
        assert "http://127.0.0.1:5000/success" in text
        assert f"http://127.0.0.1:5000/dev/mailbox/{MESSAGE.email_id}" in text


def test_mailer_for_picks_postmark_only_with_a_token() -> None:
    settings = Settings()
    assert isinstance(mailer_for(settings), DevMailbox)
    chosen = mailer_for(settings.replace(postmark_server_token="tok", postmark_api_base="http://127.0.0.1:9"))
    assert isinstance(chosen, PostmarkMailer)
    assert (chosen.server_token, chosen.api_base, chosen.sender) == ("tok", "http://127.0.0.1:9", settings.email_from)
    assert chosen.timeout == 10

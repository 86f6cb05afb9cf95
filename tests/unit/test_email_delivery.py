"""Delivering outbox rows (app/services/email_delivery.py) with the real Postmark adapter against a
local fake, and the renderer over real Jinja templates."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jinja2
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import PROJECT_ROOT
from app.db import db
from app.integrations.email import DevMailbox, PostmarkMailer
from app.models import EmailStatus, OutboxEmail
from app.services import email_delivery
from app.services.email_delivery import (
    MAX_ATTEMPTS,
    DeliveryOutcome,
    deliver_email,
    jinja_renderer,
    requeue_due_emails,
    retry_delay,
)
from app.services.outbox import queue_email
from tasks.email_delivery import send_email
from tests.fakes.postmark import FakePostmark, Reply

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
APP_URL = "http://127.0.0.1:5000"
TEST_TEMPLATES = PROJECT_ROOT / "tests" / "templates"
CONTEXT = {"name": "Ada <Lovelace>", "call_id": "abc123"}


@pytest.fixture
def postmark() -> Iterator[FakePostmark]:
    with FakePostmark() as fake:
        yield fake


@pytest.fixture
def mailer(postmark: FakePostmark) -> PostmarkMailer:
    return PostmarkMailer("token", api_base=postmark.url, sender="ChatLink <no-reply@chatlink.test>")


@pytest.fixture
def jinja_env(app) -> jinja2.Environment:  # type: ignore[no-untyped-def]
    """Flask's own environment (same autoescape rules), also reading the test-only templates."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(TEST_TEMPLATES)), app.jinja_env.loader])
    return app.jinja_env.overlay(loader=loader)


@pytest.fixture
def render(jinja_env: jinja2.Environment) -> email_delivery.Render:
    return jinja_renderer(jinja_env, app_url=APP_URL + "/")


def add_email(session: Session, **values: object) -> OutboxEmail:
    values = {"recipient": "buyer@example.com", "template": "test_message", "context": CONTEXT, **values}
    email = OutboxEmail(**values)
    session.add(email)
    session.flush()
    return email


def reload(session: Session, email: OutboxEmail) -> OutboxEmail:
    session.expire_all()
    return session.get(OutboxEmail, email.id)


class TestRenderer:
    def test_subject_is_the_text_templates_block_on_one_line(self, render: email_delivery.Render) -> None:
        rendered = render("test_message", CONTEXT)
        assert rendered.subject == "Hello Ada <Lovelace>, your call is confirmed"
        # The (subject, text, html) shape the brief asks for.
        subject, text, html = rendered
        assert (subject, text, html) == (rendered.subject, rendered.text_body, rendered.html_body)

    def test_text_is_plain_and_html_is_escaped_and_both_get_app_url(self, render: email_delivery.Render) -> None:
        _, text, html = render("test_message", CONTEXT)
        assert text.startswith("Hi Ada <Lovelace>,")
        assert "Join here: http://127.0.0.1:5000/calls/abc123" in text
        assert text.rstrip().endswith(
            "You received this email because of activity on your ChatLink account or a call you booked."
        )
        assert "Ada &lt;Lovelace&gt;" in html
        assert "<Lovelace>" not in html
        assert '<a href="http://127.0.0.1:5000/calls/abc123"' in html
        assert "<title>Hello Ada &lt;Lovelace&gt;, your call is confirmed</title>" in html
        assert "{#" not in text and "convention" not in text

    def test_a_template_without_a_subject_is_refused(self, render: email_delivery.Render) -> None:
        with pytest.raises(ValueError, match=r"no \{% block subject %\}"):
            render("no_subject", CONTEXT)

    @pytest.mark.parametrize("name", ["../base", "_base", "Test", "a/b", ""])
    def test_only_plain_template_names_are_accepted(self, render: email_delivery.Render, name: str) -> None:
        with pytest.raises(ValueError, match="not an email template name"):
            render(name, CONTEXT)

    def test_a_missing_template_raises(self, render: email_delivery.Render) -> None:
        with pytest.raises(jinja2.TemplateNotFound):
            render("does_not_exist", CONTEXT)


class TestDeliverEmail:
    def test_success_stores_the_message_id_and_what_was_sent(
        self, db_session: Session, postmark: FakePostmark, mailer: PostmarkMailer, render: email_delivery.Render
    ) -> None:
        email = add_email(db_session)
        postmark.respond(Reply.ok("pm-message-1"))

        result = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW)

        assert result.outcome is DeliveryOutcome.SENT
        row = reload(db_session, email)
        assert row.status is EmailStatus.SENT
        assert row.provider_message_id == "pm-message-1"
        assert row.sent_at == NOW
        assert row.attempts == 1
        assert row.last_error is None
        [sent] = postmark.sent
        assert (row.subject, row.text_body, row.html_body) == (sent["Subject"], sent["TextBody"], sent["HtmlBody"])
        assert sent["To"] == "buyer@example.com"
        assert sent["Metadata"] == {"email_id": str(email.id)}

    @pytest.mark.parametrize("status", [EmailStatus.SENT, EmailStatus.FAILED])
    def test_a_finished_row_is_never_sent_again(
        self,
        db_session: Session,
        postmark: FakePostmark,
        mailer: PostmarkMailer,
        render: email_delivery.Render,
        status: EmailStatus,
    ) -> None:
        email = add_email(db_session, status=status)

        result = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW)

        assert result.outcome is DeliveryOutcome.SKIPPED
        assert postmark.requests == []
        assert reload(db_session, email).status is status

    def test_a_missing_row_is_skipped(
        self, db_session: Session, mailer: PostmarkMailer, render: email_delivery.Render
    ) -> None:
        result = deliver_email(db_session, uuid.uuid4(), mailer=mailer, render=render, now=NOW)
        assert result.outcome is DeliveryOutcome.SKIPPED

    @pytest.mark.parametrize(
        "reply",
        [Reply.error(422, 406, "Inactive recipient"), Reply.error(422, 300, "Invalid email request")],
        ids=["406-inactive", "300-invalid"],
    )
    def test_a_permanent_refusal_fails_the_row_without_retry(
        self,
        db_session: Session,
        postmark: FakePostmark,
        mailer: PostmarkMailer,
        render: email_delivery.Render,
        reply: Reply,
    ) -> None:
        email = add_email(db_session)
        postmark.respond(reply)

        result = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW)

        assert result.outcome is DeliveryOutcome.FAILED
        row = reload(db_session, email)
        assert row.status is EmailStatus.FAILED
        assert f"[{reply.body['ErrorCode']}]" in row.last_error
        assert row.next_attempt_at is None
        assert row.sent_at is None and row.provider_message_id is None
        assert row.subject == "Hello Ada <Lovelace>, your call is confirmed"
        assert len(postmark.requests) == 1

    def test_a_transient_failure_schedules_a_retry(
        self, db_session: Session, postmark: FakePostmark, mailer: PostmarkMailer, render: email_delivery.Render
    ) -> None:
        email = add_email(db_session)
        postmark.respond(Reply(500, b"Internal Server Error"), Reply(429, {"ErrorCode": 0, "Message": "slow down"}))

        first = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW)
        second = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW + timedelta(minutes=1))

        assert (first.outcome, second.outcome) == (DeliveryOutcome.RETRY, DeliveryOutcome.RETRY)
        row = reload(db_session, email)
        assert row.status is EmailStatus.PENDING
        assert row.attempts == 2
        assert row.next_attempt_at == NOW + timedelta(minutes=1) + retry_delay(2)
        assert "HTTP 429" in row.last_error

    def test_gives_up_after_max_attempts(
        self, db_session: Session, postmark: FakePostmark, mailer: PostmarkMailer, render: email_delivery.Render
    ) -> None:
        email = add_email(db_session, attempts=MAX_ATTEMPTS - 1, next_attempt_at=NOW)
        postmark.respond(Reply(503, b"Service Unavailable"))

        result = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW)

        assert result.outcome is DeliveryOutcome.FAILED
        row = reload(db_session, email)
        assert row.status is EmailStatus.FAILED
        assert row.attempts == MAX_ATTEMPTS
        assert row.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")

    def test_a_template_that_does_not_render_fails_without_sending(
        self, db_session: Session, postmark: FakePostmark, mailer: PostmarkMailer, render: email_delivery.Render
    ) -> None:
        email = add_email(db_session, template="does_not_exist")

        result = deliver_email(db_session, email.id, mailer=mailer, render=render, now=NOW)

        assert result.outcome is DeliveryOutcome.FAILED
        assert reload(db_session, email).last_error.startswith("render: TemplateNotFound")
        assert postmark.requests == []

    def test_the_dev_mailbox_marks_the_row_sent_with_a_synthetic_id(
        self, db_session: Session, render: email_delivery.Render
    ) -> None:
        email = add_email(db_session)

        deliver_email(db_session, email.id, mailer=DevMailbox(app_url=APP_URL), render=render, now=NOW)

        row = reload(db_session, email)
        assert row.status is EmailStatus.SENT
        assert row.provider_message_id.startswith("dev-")
        assert "Join here: http://127.0.0.1:5000/calls/abc123" in row.text_body


def test_retry_delay_doubles_up_to_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


class TestQueueEmail:
    def test_the_same_dedupe_key_makes_one_row_and_one_task(self, db_session: Session, enqueued) -> None:  # type: ignore[no-untyped-def]
        first = queue_email(db_session, recipient="a@example.com", template="t", context={}, dedupe_key="cause:1")
        second = queue_email(db_session, recipient="a@example.com", template="t", context={}, dedupe_key="cause:1")
        db_session.commit()

        assert first is not None and second is None
        count = db_session.scalar(
            select(func.count()).select_from(OutboxEmail).where(OutboxEmail.dedupe_key == "cause:1")
        )
        assert count == 1
        assert enqueued == [(send_email.name, (str(first),), {})]


class TestRequeueDueEmails:
    def test_enqueues_due_rows_and_leaves_the_others(self, db_session: Session, enqueued, settings) -> None:  # type: ignore[no-untyped-def]
        minute = timedelta(minutes=1)
        retry_due = add_email(db_session, attempts=1, next_attempt_at=NOW - minute, created_at=NOW - 10 * minute)
        never_tried = add_email(db_session, created_at=NOW - 2 * minute)
        add_email(db_session, created_at=NOW - timedelta(seconds=30))  # just queued: its task is on its way
        add_email(db_session, attempts=1, next_attempt_at=NOW + minute, created_at=NOW - 10 * minute)  # not yet
        add_email(db_session, status=EmailStatus.SENT, created_at=NOW - 10 * minute)
        add_email(db_session, status=EmailStatus.FAILED, next_attempt_at=NOW - minute, created_at=NOW - 10 * minute)

        report = requeue_due_emails(db_session, NOW, settings)

        assert report == {"outbox_requeued": 2, "outbox_requeue_failed": 0}
        assert sorted(args for _, args, _ in enqueued) == sorted([(str(retry_due.id),), (str(never_tried.id),)])
        assert set(enqueued.names()) == {send_email.name}
        assert reload(db_session, retry_due).next_attempt_at == NOW + email_delivery.SWEEP_LEASE
        assert reload(db_session, never_tried).next_attempt_at == NOW + email_delivery.SWEEP_LEASE

    def test_a_second_sweep_does_not_enqueue_again_until_the_lease_ends(
        self,
        db_session: Session,
        enqueued,  # type: ignore[no-untyped-def]
        settings,  # type: ignore[no-untyped-def]
    ) -> None:
        email = add_email(db_session, created_at=NOW - timedelta(minutes=5))

        requeue_due_emails(db_session, NOW, settings)
        requeue_due_emails(db_session, NOW + timedelta(seconds=5), settings)
        assert len(enqueued) == 1

        requeue_due_emails(db_session, NOW + email_delivery.SWEEP_LEASE, settings)
        assert enqueued.names() == [send_email.name, send_email.name]
        assert all(args == (str(email.id),) for _, args, _ in enqueued)

    def test_a_row_the_broker_refused_stays_due(
        self,
        db_session: Session,
        settings,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        email = add_email(db_session, created_at=NOW - timedelta(minutes=5))

        def broker_down(*args: object, **kwargs: object) -> None:
            raise ConnectionError("redis is down")

        monkeypatch.setattr("celery.app.task.Task.apply_async", broker_down)
        report = requeue_due_emails(db_session, NOW, settings)

        assert report == {"outbox_requeued": 0, "outbox_requeue_failed": 1}
        assert reload(db_session, email).next_attempt_at is None

    def test_the_batch_is_bounded(self, db_session: Session, enqueued, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.setattr(email_delivery, "SWEEP_BATCH", 3)
        for _ in range(5):
            add_email(db_session, created_at=NOW - timedelta(minutes=5))

        assert requeue_due_emails(db_session, NOW, settings)["outbox_requeued"] == 3
        assert requeue_due_emails(db_session, NOW, settings)["outbox_requeued"] == 2
        assert requeue_due_emails(db_session, NOW, settings)["outbox_requeued"] == 0


def test_two_workers_on_the_same_row_send_it_once(committed_db: Session, jinja_env: jinja2.Environment) -> None:
    """Real concurrent transactions: the row lock makes the second worker wait, then skip."""
    email = add_email(committed_db)
    committed_db.commit()
    render = jinja_renderer(jinja_env, app_url=APP_URL)
    outcomes: list[DeliveryOutcome] = []

    with FakePostmark() as fake:
        fake.respond(Reply(delay=0.5))  # the first send is slow, so the second worker arrives meanwhile
        mailer = PostmarkMailer("token", api_base=fake.url, sender="no-reply@chatlink.test")

        def worker() -> None:
            with db.session_scope() as session:
                outcomes.append(deliver_email(session, email.id, mailer=mailer, render=render, now=NOW).outcome)

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

        assert sorted(outcomes) == sorted([DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED])
        assert len(fake.requests) == 1
    assert reload(committed_db, email).status is EmailStatus.SENT


def test_every_shipped_email_follows_the_template_convention(app) -> None:  # type: ignore[no-untyped-def]
    """Each templates/emails/NAME.txt has a NAME.html, both extend the bases, and the text one
    has a subject block: what the renderer needs (see templates/emails/_base.txt)."""
    folder = PROJECT_ROOT / "templates" / "emails"
    names = sorted(p.stem for p in folder.glob("*.txt") if not p.stem.startswith("_"))
    html_names = sorted(p.stem for p in folder.glob("*.html") if not p.stem.startswith("_"))
    assert names == html_names
    for name in names:
        assert email_delivery.TEMPLATE_NAME.match(name), name
        text = app.jinja_env.get_template(f"emails/{name}.txt")
        html = app.jinja_env.get_template(f"emails/{name}.html")
        assert "subject" in text.blocks, f"emails/{name}.txt has no subject block"
        assert "body" in text.blocks and "body" in html.blocks, name
        for suffix in ("txt", "html"):
            source = (folder / f"{name}.{suffix}").read_text()
            assert re.search(rf"{{%-?\s*extends\s+[\"']emails/_base\.{suffix}[\"']", source), f"{name}.{suffix}"

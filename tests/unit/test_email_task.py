"""``tasks.email_delivery.send_email`` end to end: queue_email → the task → Postmark (a local fake).

The task runs with ``apply()``, Celery's eager mode, so its real retry policy (``autoretry_for``)
runs too: a retry executes at once instead of after its countdown.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import jinja2
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import app.services.email_delivery
from app.config import PROJECT_ROOT
from app.db import utcnow
from app.models import EmailStatus, OutboxEmail
from app.services.email_delivery import requeue_due_emails
from app.services.outbox import queue_email
from tasks.email_delivery import EmailRetryLater, send_email
from tasks.maintenance import SWEEP_STEPS, sweep
from tests.fakes.postmark import FakePostmark, Reply

CONTEXT = {"name": "Ada", "call_id": "abc123"}


@pytest.fixture(autouse=True)
def app_context(app) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Run tasks in this test run's app. A shared task otherwise pushes the context of the app its
    Celery app belongs to, which is the last one built (``make_app`` in another test)."""
    with app.app_context():
        yield


@pytest.fixture
def postmark(app, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePostmark]:  # type: ignore[no-untyped-def]
    """A fake Postmark the app is configured to use, and the test-only email templates."""
    with FakePostmark() as fake:
        settings = app.extensions["settings"].replace(
            postmark_server_token="test-server-token", postmark_api_base=fake.url
        )
        monkeypatch.setitem(app.extensions, "settings", settings)
        loader = jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(str(PROJECT_ROOT / "tests" / "templates")), app.jinja_env.loader]
        )
        monkeypatch.setattr(app.jinja_env, "loader", loader)
        yield fake


def queue(session: Session, dedupe_key: str | None = None) -> str:
    email_id = queue_email(
        session, recipient="buyer@example.com", template="test_message", context=CONTEXT, dedupe_key=dedupe_key
    )
    session.commit()
    return str(email_id)


def row(session: Session, email_id: str) -> OutboxEmail:
    session.expire_all()
    return session.get(OutboxEmail, email_id)


def test_queue_email_enqueues_the_task_by_name_after_commit(db_session: Session, enqueued) -> None:  # type: ignore[no-untyped-def]
    email_id = queue(db_session)
    assert enqueued == [(send_email.name, (email_id,), {})]


def test_the_emails_of_one_transaction_are_one_task(db_session: Session, enqueued) -> None:  # type: ignore[no-untyped-def]
    first = queue_email(db_session, recipient="a@example.com", template="test_message", context=CONTEXT)
    second = queue_email(db_session, recipient="b@example.com", template="test_message", context=CONTEXT)
    assert enqueued == []
    db_session.commit()
    third = queue(db_session)

    assert enqueued == [(send_email.name, (str(first), str(second)), {}), (send_email.name, (third,), {})]


def test_emails_queued_in_a_rolled_back_transaction_are_never_published(db_session: Session, enqueued) -> None:  # type: ignore[no-untyped-def]
    queue_email(db_session, recipient="a@example.com", template="test_message", context=CONTEXT)
    db_session.rollback()
    kept = queue(db_session)

    assert enqueued == [(send_email.name, (kept,), {})]


def test_one_task_sends_each_row_and_a_retry_skips_those_already_sent(
    db_session: Session, postmark: FakePostmark
) -> None:
    first = queue_email(db_session, recipient="a@example.com", template="test_message", context=CONTEXT)
    second = queue_email(db_session, recipient="b@example.com", template="test_message", context=CONTEXT)
    db_session.commit()
    postmark.respond_to("b@example.com", Reply(503, b"Service Unavailable"), Reply.ok("pm-b"))

    result = send_email.apply(args=(str(first), str(second)))

    assert result.result == "skipped,sent"  # the retry: the first row was sent by the first run
    assert sorted(r.json["To"] for r in postmark.requests) == ["a@example.com", "b@example.com", "b@example.com"]
    assert (row(db_session, str(first)).status, row(db_session, str(first)).attempts) == (EmailStatus.SENT, 1)
    assert (row(db_session, str(second)).status, row(db_session, str(second)).attempts) == (EmailStatus.SENT, 2)


def test_success_marks_sent_with_the_message_id(db_session: Session, postmark: FakePostmark) -> None:
    email_id = queue(db_session)
    postmark.respond(Reply.ok("pm-42"))

    result = send_email.apply(args=(email_id,))

    assert result.successful() and result.result == "sent"
    email = row(db_session, email_id)
    assert (email.status, email.provider_message_id, email.attempts) == (EmailStatus.SENT, "pm-42", 1)
    [request] = postmark.requests
    assert request.headers["X-Postmark-Server-Token"] == "test-server-token"
    sent = request.json
    assert {k: sent[k] for k in ("From", "To", "Subject", "MessageStream")} == {
        "From": "ChatLink <no-reply@chatlink.localhost>",
        "To": "buyer@example.com",
        "Subject": "Hello Ada, your call is confirmed",
        "MessageStream": "outbound",
    }
    assert sent["TextBody"] == email.text_body and "http://127.0.0.1:5000/calls/abc123" in sent["TextBody"]
    assert sent["HtmlBody"] == email.html_body and 'href="http://127.0.0.1:5000/calls/abc123"' in sent["HtmlBody"]


def test_running_the_task_twice_sends_once(db_session: Session, postmark: FakePostmark) -> None:
    email_id = queue(db_session)

    assert send_email.apply(args=(email_id,)).result == "sent"
    assert send_email.apply(args=(email_id,)).result == "skipped"

    assert len(postmark.requests) == 1


def test_406_fails_the_row_and_is_not_retried(db_session: Session, postmark: FakePostmark) -> None:
    email_id = queue(db_session)
    postmark.respond(Reply.error(422, 406, "You tried to send to a recipient that has been marked as inactive."))

    result = send_email.apply(args=(email_id,))

    assert result.result == "failed"
    assert len(postmark.requests) == 1
    email = row(db_session, email_id)
    assert email.status is EmailStatus.FAILED
    assert "[406]" in email.last_error


@pytest.mark.parametrize(
    "reply", [Reply.error(422, 300, "Invalid email request"), Reply.error(422, 1000, "Other")], ids=["300", "422"]
)
def test_invalid_requests_fail_the_row(db_session: Session, postmark: FakePostmark, reply: Reply) -> None:
    email_id = queue(db_session)
    postmark.respond(reply)

    assert send_email.apply(args=(email_id,)).result == "failed"
    assert len(postmark.requests) == 1
    assert row(db_session, email_id).status is EmailStatus.FAILED


@pytest.mark.parametrize(
    "failure",
    [Reply.error(500, 0, "Internal Server Error"), Reply(503, b"Service Unavailable"), Reply(disconnect=True)],
    ids=["500", "503", "network"],
)
def test_a_transient_failure_is_retried_and_the_retry_sends_once(
    db_session: Session, postmark: FakePostmark, failure: Reply
) -> None:
    email_id = queue(db_session)
    postmark.respond(failure, Reply.ok("pm-after-retry"))

    result = send_email.apply(args=(email_id,))

    assert result.result == "sent"
    assert len(postmark.requests) == 2
    email = row(db_session, email_id)
    assert (email.status, email.provider_message_id, email.attempts) == (EmailStatus.SENT, "pm-after-retry", 2)
    assert email.last_error is None
    sent_rows = db_session.scalar(
        select(func.count()).select_from(OutboxEmail).where(OutboxEmail.status == EmailStatus.SENT)
    )
    assert sent_rows == 1


def test_celery_stops_retrying_after_max_retries_and_the_row_stays_pending_for_the_sweep(
    db_session: Session, postmark: FakePostmark
) -> None:
    email_id = queue(db_session)
    postmark.respond(*[Reply(503, b"Service Unavailable")] * 10)

    result = send_email.apply(args=(email_id,))

    assert result.failed() and isinstance(result.result, EmailRetryLater)
    assert len(postmark.requests) == send_email.max_retries + 1
    email = row(db_session, email_id)
    assert email.status is EmailStatus.PENDING
    assert email.attempts == send_email.max_retries + 1
    assert email.next_attempt_at is not None


def test_a_lost_database_connection_is_retried_and_the_retry_sends_once(
    db_session: Session, postmark: FakePostmark, monkeypatch: pytest.MonkeyPatch
) -> None:
    email_id = queue(db_session)
    postmark.respond(Reply.ok("pm-after-outage"))
    deliver = app.services.email_delivery.deliver_email
    calls = []

    def database_drops_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
        return deliver(*args, **kwargs)

    monkeypatch.setattr(app.services.email_delivery, "deliver_email", database_drops_once)

    result = send_email.apply(args=(email_id,))

    assert result.result == "sent"
    assert len(calls) == 2 and len(postmark.requests) == 1
    email = row(db_session, email_id)
    assert (email.status, email.provider_message_id, email.attempts) == (EmailStatus.SENT, "pm-after-outage", 1)


def test_the_retry_policy_is_explicit() -> None:
    assert send_email.autoretry_for == (EmailRetryLater, OperationalError)
    assert send_email.retry_backoff == 30 and send_email.retry_jitter is True
    assert send_email.max_retries == 5


def test_without_a_token_the_dev_mailbox_records_the_email(db_session: Session, app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(PROJECT_ROOT / "tests" / "templates")), app.jinja_env.loader]
    )
    monkeypatch.setattr(app.jinja_env, "loader", loader)
    email_id = queue(db_session)

    assert send_email.apply(args=(email_id,)).result == "sent"

    email = row(db_session, email_id)
    assert email.provider_message_id.startswith("dev-")
    assert email.subject == "Hello Ada, your call is confirmed"


def test_the_beat_sweep_re_enqueues_an_email_whose_message_was_lost(db_session: Session, enqueued) -> None:  # type: ignore[no-untyped-def]
    lost = OutboxEmail(
        recipient="buyer@example.com",
        template="test_message",
        context=CONTEXT,
        created_at=utcnow() - timedelta(minutes=2),
    )
    db_session.add(lost)
    db_session.flush()

    report = sweep.apply().result

    assert requeue_due_emails in SWEEP_STEPS
    assert report["outbox_requeued"] == 1
    assert (send_email.name, (str(lost.id),), {}) in enqueued

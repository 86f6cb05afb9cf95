"""The built-in checkout delivers its events like Stripe: over HTTP to the app's own webhook,
signed with STRIPE_WEBHOOK_SECRET, retried with backoff until the app answers 2xx."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe
from sqlalchemy import func, select

from app.db import db, utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.models import StripeEvent, StripeEventStatus
from app.services import stripe_events
from app.services.checkout import start_checkout
from tasks.builtin_payments import WebhookRejected, deliver_builtin_webhook
from tests.factories import ProfileFactory


def paid_event(app, session) -> dict:  # type: ignore[no-untyped-def]
    settings = app.extensions["settings"]
    profile = ProfileFactory()
    session.commit()
    events: list[dict] = []
    gateway = builtin_gateway(settings, app.extensions["redis"], notify=events.append)
    checkout = start_checkout(
        session,
        slug=profile.slug,
        buyer_email="buyer@example.org",
        note="",
        submission_key=secrets.token_urlsafe(24),
        gateway=gateway,
        app_url=settings.app_url,
        app_env=settings.app_env,
        capture_manually=True,
        now=utcnow(),
    )
    session.commit()
    gateway.pay(checkout.stripe_checkout_session_id)
    return events[0]


def test_the_event_reaches_the_inbox_through_the_signed_webhook(served_app, committed_db, redis, enqueued):
    event = paid_event(served_app, committed_db)

    with served_app.app_context():
        assert deliver_builtin_webhook(event) == 200

    with db.session_scope() as session:
        row = session.scalar(select(StripeEvent).where(StripeEvent.stripe_event_id == event["id"]))
        assert (row.stripe_event_id, row.status) == (event["id"], StripeEventStatus.RECEIVED)
        assert row.payload == event
    assert ("tasks.stripe_events.process_stripe_event", (str(row.id),), {}) in enqueued


def test_the_inbox_row_is_committed_before_its_task_is_published(served_app, committed_db, redis, monkeypatch):  # type: ignore[no-untyped-def]
    event = paid_event(served_app, committed_db)
    seen_at_publish: list[int] = []

    def publish(task_name: str, *args: object, **options: object) -> bool:
        # Look from a connection of our own: a worker taking the task at once must find the row.
        with db.engine.connect() as other:
            seen_at_publish.append(other.scalar(select(func.count()).where(StripeEvent.stripe_event_id == event["id"])))
        return True

    monkeypatch.setattr(stripe_events, "enqueue_now", publish)
    with served_app.app_context():
        assert deliver_builtin_webhook(event) == 200

    assert seen_at_publish == [1]


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST with ``status`` and keeps what it was sent."""

    status = 500
    received: list[tuple[bytes, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.received.append((body, self.headers["Stripe-Signature"]))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_non_2xx_answer_is_retried_and_every_attempt_is_signed(make_app, settings, recorder):
    app = make_app(settings.replace(app_url=recorder))
    event = {"id": "evt_test_retry", "object": "event", "type": "checkout.session.completed", "data": {"object": {}}}

    with app.app_context(), pytest.raises(WebhookRejected):
        deliver_builtin_webhook(event)

    ((body, signature),) = Recorder.received
    verified = stripe.Webhook.construct_event(body, signature, settings.stripe_webhook_secret)
    assert verified.id == "evt_test_retry"
    assert {requests.RequestException, WebhookRejected} <= set(deliver_builtin_webhook.autoretry_for)
    assert deliver_builtin_webhook.retry_backoff and deliver_builtin_webhook.max_retries >= 10


def test_an_unreachable_app_is_a_retryable_network_error(make_app, settings):
    app = make_app(settings.replace(app_url="http://127.0.0.1:9"))
    with app.app_context(), pytest.raises(requests.ConnectionError):
        deliver_builtin_webhook({"id": "evt_x", "type": "x", "data": {"object": {}}})

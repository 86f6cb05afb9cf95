"""Concurrency on the money path, with real commits: the same event delivered ten times at once,
and ten events for one payment processed at once, create exactly one Transaction, one
CallRequest and two emails."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select

from app.db import db, utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.integrations.payments import sign_payload
from app.models import CallRequest, OutboxEmail, StripeEvent, StripeEventStatus, Transaction
from app.services.checkout import start_checkout
from tasks.stripe_events import process_stripe_event
from tests.factories import ProfileFactory

PROCESS = "tasks.stripe_events.process_stripe_event"
THREADS = 10


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; return the results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.fixture
def paid_session(app, committed_db, redis) -> dict:  # type: ignore[no-untyped-def]
    settings = app.extensions["settings"]
    profile = ProfileFactory(price_cents=1500)
    committed_db.commit()
    events: list[dict] = []
    gateway = builtin_gateway(settings, redis, notify=events.append)
    checkout = start_checkout(
        committed_db,
        slug=profile.slug,
        buyer_email="buyer@example.org",
        note="hello",
        submission_key=secrets.token_urlsafe(24),
        gateway=gateway,
        app_url=settings.app_url,
        app_env=settings.app_env,
        capture_manually=True,
        now=utcnow(),
    )
    committed_db.commit()
    gateway.pay(checkout.stripe_checkout_session_id)
    (event,) = events
    return event


def counts(event: dict) -> tuple[int, int, int]:
    """Transactions, requests and emails of this event's payment (rows another suite left behind
    do not count)."""
    session_id = event["data"]["object"]["id"]
    with db.session_scope() as session:
        transactions = select(Transaction.id).where(Transaction.stripe_checkout_session_id == session_id)
        requests = select(CallRequest.id).where(CallRequest.transaction_id.in_(transactions))
        emails = select(OutboxEmail.id).where(OutboxEmail.context["session_id"].astext == session_id)
        return tuple(  # type: ignore[return-value]
            len(session.scalars(query).all()) for query in (transactions, requests, emails)
        )


def inbox(session, pattern: str, *columns):  # type: ignore[no-untyped-def]
    """Inbox rows whose event id matches ``pattern`` (LIKE), as ``columns``."""
    return session.scalars(select(*columns).where(StripeEvent.stripe_event_id.like(pattern))).all()


def post_event(app, event: dict) -> int:  # type: ignore[no-untyped-def]
    payload = json.dumps(event).encode()
    signature = sign_payload(payload, app.extensions["settings"].stripe_webhook_secret)
    response = app.test_client().post("/api/webhooks/stripe", data=payload, headers={"Stripe-Signature": signature})
    return response.status_code


def process(app, row_id: str) -> str | None:  # type: ignore[no-untyped-def]
    with app.app_context():
        return process_stripe_event(row_id)


def test_the_same_event_delivered_ten_times_at_once(app, committed_db, paid_session, enqueued):
    statuses = run_together(THREADS, lambda _: post_event(app, paid_session))

    assert statuses == [200] * THREADS
    with db.session_scope() as session:
        assert len(inbox(session, paid_session["id"], StripeEvent.id)) == 1
    queued = [args[0] for name, args, _ in enqueued if name == PROCESS]
    assert len(queued) == 1
    # The task redelivered ten times at once (acks_late, the sweep) still runs the event once.
    outcomes = run_together(THREADS, lambda _: process(app, queued[0]))
    assert (outcomes.count("processed"), outcomes.count(None)) == (1, THREADS - 1)
    assert counts(paid_session) == (1, 1, 2)


def test_ten_events_for_one_payment_processed_at_once(app, committed_db, paid_session, enqueued):
    """Stripe may announce one payment with several events (completed, async succeeded)."""
    kinds = ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
    events = [{**paid_session, "id": f"evt_concurrent_{i}", "type": kinds[i % 2]} for i in range(THREADS)]
    assert run_together(THREADS, lambda i: post_event(app, events[i])) == [200] * THREADS
    queued = [args[0] for name, args, _ in enqueued if name == PROCESS]
    assert len(queued) == THREADS

    outcomes = run_together(THREADS, lambda i: process(app, queued[i]))

    assert outcomes == ["processed"] * THREADS
    assert counts(paid_session) == (1, 1, 2)
    with db.session_scope() as session:
        notes = list(inbox(session, "evt_concurrent_%", StripeEvent.error))
        assert notes.count(None) == 1  # the one that fulfilled the payment
        assert notes.count("already fulfilled") == THREADS - 1
        assert set(inbox(session, "evt_concurrent_%", StripeEvent.status)) == {StripeEventStatus.PROCESSED}

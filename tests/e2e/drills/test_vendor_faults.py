"""Drill: the vendors misbehave, and ChatLink retries where a retry can help and nowhere else.

The stack runs with the REAL adapters (stripe-python, requests for Daily, postmarker) pointed at
the local fakes in ``tests/fakes/`` (servers on 127.0.0.1 inside this test process):

* Stripe answers 500 three times on capture, then 200: stripe-python retries twice itself, the
  task retries once more, and every attempt carries the same ``capture:<request id>`` key. A 402
  (card declined) is not retried: one request, the call is cancelled and the hold released.
* Daily answers 429 four times on room creation, then 200: the adapter retries three times, the
  task once more, always with the same deterministic room name; one room exists in the end.
* Postmark answers 503, then 200: the email is retried and sent once. A 406 (inactive recipient)
  fails the email after exactly one request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.e2e.drills.conftest import Drill, drill_stack, wait_for
from tests.e2e.drills.flow import (
    Seller,
    accept,
    completed_event,
    log_in,
    post_event,
    seed_seller,
    start_checkout,
    wait_request,
)
from tests.fakes.daily_api import FakeDaily
from tests.fakes.postmark import FakePostmark, Reply
from tests.fakes.stripe_api import FakeStripe

CAPTURE = r"/v1/payment_intents/{intent}/capture"


@dataclass
class Vendors:
    drill: Drill
    stripe: FakeStripe
    daily: FakeDaily
    postmark: FakePostmark
    seller: Seller
    seller_http: requests.Session


@pytest.fixture(scope="module")
def vendors() -> Iterator[Vendors]:
    with FakeStripe() as stripe_fake, FakeDaily(api_key="drill-daily-key") as daily, FakePostmark() as postmark:
        overrides = {
            "STRIPE_SECRET_KEY": "sk_test_drill",
            "STRIPE_API_BASE": stripe_fake.url,
            "DAILY_API_KEY": daily.api_key,
            "DAILY_API_BASE": daily.url,
            "POSTMARK_SERVER_TOKEN": "drill-postmark-token",
            "POSTMARK_API_BASE": postmark.url,
        }
        with drill_stack("vendor-faults", **overrides) as drill:
            drill.start_all()
            seller = seed_seller(drill)
            yield Vendors(drill, stripe_fake, daily, postmark, seller, log_in(drill, seller))


def paid_request(vendors: Vendors, buyer_email: str) -> tuple[uuid.UUID, str]:
    """A buyer pays (the fake Stripe holds the money) and Stripe's signed webhook creates the
    request. Returns the request id and its PaymentIntent id."""
    session_id = start_checkout(vendors.drill, vendors.seller, buyer_email)
    intent = vendors.stripe.set_intent(session_id, "requires_capture")
    assert post_event(vendors.drill, completed_event(vendors.stripe.sessions[session_id])).status_code == 200
    return wait_request(vendors.drill, session_id), intent["id"]


def state_of(drill: Drill, request_id: uuid.UUID) -> tuple[str, str | None, str, str | None]:
    row = drill.rows(
        "SELECT r.status, r.cancel_reason, t.payment_state, r.room_name FROM call_requests r"
        " JOIN transactions t ON t.id = r.transaction_id WHERE r.id = :id",
        id=request_id,
    )[0]
    return row.status, row.cancel_reason, row.payment_state, row.room_name


def test_capture_and_room_creation_are_retried_with_the_same_keys(vendors: Vendors) -> None:
    drill, stripe_fake, daily = vendors.drill, vendors.stripe, vendors.daily
    request_id, intent_id = paid_request(vendors, "retry@buyers.example.org")
    stripe_fake.fail_path(CAPTURE.format(intent=intent_id), 500, 500, 500)
    daily.fail_next_on("POST", "/v1/rooms", 429, 429, 429, 429)

    accept(drill, vendors.seller_http, request_id)
    wait_for(
        lambda: (
            state_of(drill, request_id)[2] == "captured"
            and drill.scalar("SELECT room_ready_at IS NOT NULL FROM call_requests WHERE id = :id", id=request_id)
        ),
        timeout=60,
        what="the capture and the room",
        detail=lambda: state_of(drill, request_id),
    )

    captures = [r for r in stripe_fake.requests if r.path == CAPTURE.format(intent=intent_id)]
    creations = [r for r in daily.calls("POST", "/v1/rooms") if r.path == "/v1/rooms"]
    status, _, payment_state, room_name = state_of(drill, request_id)
    keys = sorted({r.idempotency_key for r in captures})
    capture_retries = drill.task_retries("tasks.request_payments.capture_accepted")
    room_retries = drill.task_retries("tasks.calls.provision_room")
    print(
        f"\ndrill vendor-faults: capture requests {len(captures)} (keys {keys}, task retries {capture_retries}),"
        f" room creations {len(creations)} (names {len({r.json['name'] for r in creations})},"
        f" task retries {room_retries}), rooms at Daily {len(daily.rooms)}, request {status}, payment {payment_state}"
    )
    # Three 500s and the 200: stripe-python's two retries, then one of the task's. One key for all.
    assert len(captures) == 4
    assert capture_retries == 1
    assert {r.idempotency_key for r in captures} == {f"capture:{request_id}"}
    assert stripe_fake.intents[intent_id]["status"] == "succeeded"
    assert (status, payment_state) == ("ACCEPTED", "captured")
    # Four 429s and the 200: the adapter's three retries, then one of the task's; every attempt
    # names the same room, and exactly that room exists.
    assert len(creations) == 5
    assert room_retries == 1
    assert {r.json["name"] for r in creations} == {room_name}
    assert list(daily.rooms) == [room_name]
    wait_for(
        lambda: (
            drill.scalar(
                "SELECT status FROM email_outbox WHERE dedupe_key = :key", key=f"call_ready:buyer:{request_id}"
            )
            == "sent"
        ),
        timeout=30,
        what="the buyer's call link email",
    )


def test_a_declined_capture_is_not_retried_and_the_hold_is_released(vendors: Vendors) -> None:
    drill, stripe_fake = vendors.drill, vendors.stripe
    request_id, intent_id = paid_request(vendors, "declined@buyers.example.org")
    stripe_fake.fail_path(CAPTURE.format(intent=intent_id), 402, code="card_declined")
    rooms_before = len(vendors.daily.calls("POST", "/v1/rooms"))
    retries_before = drill.task_retries("tasks.request_payments.capture_accepted")

    accept(drill, vendors.seller_http, request_id)
    wait_for(
        lambda: state_of(drill, request_id)[:3] == ("CANCELLED", "payment_failed", "voided"),
        timeout=60,
        what="the request cancelled and the hold released",
        detail=lambda: state_of(drill, request_id),
    )
    captures = [r for r in stripe_fake.requests if r.path == CAPTURE.format(intent=intent_id)]
    cancels = [r for r in stripe_fake.requests if r.path == f"/v1/payment_intents/{intent_id}/cancel"]
    print(f"\ndrill vendor-faults: declined capture requests {len(captures)}, cancel requests {len(cancels)}")
    assert len(captures) == 1
    assert drill.task_retries("tasks.request_payments.capture_accepted") == retries_before
    assert [r.idempotency_key for r in cancels] == [f"cancel:{request_id}"]
    assert len(vendors.daily.calls("POST", "/v1/rooms")) == rooms_before  # no room for a call that cannot happen


def test_postmark_503_is_retried_and_406_is_not(vendors: Vendors) -> None:
    drill, postmark = vendors.drill, vendors.postmark
    flaky, inactive = "flaky@buyers.example.org", "inactive@buyers.example.org"
    postmark.respond_to(flaky, Reply(503, b"Service Unavailable"))
    postmark.respond_to(
        inactive, Reply.error(422, 406, "You tried to send to a recipient that has been marked as inactive.")
    )
    retries_before = drill.task_retries("tasks.email_delivery.send_email")
    flaky_request, _ = paid_request(vendors, flaky)
    inactive_request, _ = paid_request(vendors, inactive)
    flaky_key, inactive_key = f"payment_received:buyer:{flaky_request}", f"payment_received:buyer:{inactive_request}"

    def email(key: str) -> tuple[str, int] | None:
        rows = drill.rows("SELECT status, attempts FROM email_outbox WHERE dedupe_key = :key", key=key)
        return (rows[0].status, rows[0].attempts) if rows else None

    # Celery's first retry of an email comes within 30 s (full jitter), well before the sweep's.
    wait_for(
        lambda: email(flaky_key) == ("sent", 2),
        timeout=45,
        what="the 503'd email to be sent on retry",
        detail=lambda: email(flaky_key),
        interval=0.5,
    )
    to = {address: [body for body in postmark.sent if body["To"] == address] for address in (flaky, inactive)}
    print(
        f"\ndrill vendor-faults: Postmark requests to the 503'd buyer {len(to[flaky])} ({email(flaky_key)}),"
        f" to the inactive buyer {len(to[inactive])} ({email(inactive_key)})"
    )
    assert email(inactive_key) == ("failed", 1)
    assert len(to[flaky]) == 2  # the 503 and the retry that was accepted
    assert len(to[inactive]) == 1  # the 406, never repeated
    assert drill.task_retries("tasks.email_delivery.send_email") == retries_before + 1  # the 503'd email's, no other
    last_error = drill.scalar("SELECT last_error FROM email_outbox WHERE dedupe_key = :key", key=inactive_key)
    assert "422" in last_error
    assert drill.tasks_ahead_of_their_commit() == 0

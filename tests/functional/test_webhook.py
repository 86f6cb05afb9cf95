"""The Stripe webhook endpoint: signature verification with the real stripe library on the raw
body, the inbox insert and the after-commit enqueue. Event handling is tested apart, in
tests/unit/test_stripe_events.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.integrations.payments import sign_payload
from app.models import StripeEvent, StripeEventStatus

# Real event bodies as Stripe sends them; see tests/fixtures/stripe/SOURCES.md.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"
PROCESS = "tasks.stripe_events.process_stripe_event"


@pytest.fixture
def secret(app) -> str:  # type: ignore[no-untyped-def]
    return app.extensions["settings"].stripe_webhook_secret


def raw(name: str = "checkout.session.completed.payment_mode.json") -> bytes:
    return (FIXTURES / name).read_bytes()


def hmac_hex(secret: str, timestamp: int, payload: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def post(client, payload: bytes, signature: str | None, path: str = "/api/webhooks/stripe"):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post(path, data=payload, headers=headers)


def fixture_events(model=StripeEvent):  # type: ignore[no-untyped-def]
    """Inbox rows of the fixture bodies only (their ids are all zeros; rows another suite left
    behind do not count)."""
    return select(model).where(StripeEvent.stripe_event_id.like("evt_0000%"))


def stored(db_session) -> int:  # type: ignore[no-untyped-def]
    return len(db_session.scalars(fixture_events()).all())


class TestSignature:
    @pytest.mark.parametrize("path", ["/api/webhooks/stripe", "/webhooks/stripe"])
    def test_a_valid_event_is_stored_and_queued_after_commit(self, client, db_session, secret, enqueued, path):
        payload = raw()
        response = post(client, payload, sign_payload(payload, secret), path)

        assert response.status_code == 200
        assert response.get_json() == {"received": True}
        row = db_session.scalar(fixture_events())
        assert (row.stripe_event_id, row.type) == ("evt_00000000000000", "checkout.session.completed")
        assert row.status == StripeEventStatus.RECEIVED
        assert row.payload == json.loads(payload)
        assert enqueued == [(PROCESS, (str(row.id),), {})]

    def test_a_tampered_body_is_refused(self, client, db_session, secret, enqueued):
        payload = raw()
        signature = sign_payload(payload, secret)
        tampered = payload.replace(b'"amount_total": 25000', b'"amount_total": 1')
        assert tampered != payload
        assert post(client, tampered, signature).status_code == 400
        assert (stored(db_session), enqueued) == (0, [])

    def test_a_re_serialised_body_is_refused(self, client, db_session, secret, enqueued):
        payload = raw()
        signature = sign_payload(payload, secret)
        reserialised = json.dumps(json.loads(payload), separators=(",", ":")).encode()
        response = post(client, reserialised, signature)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_signature"
        assert stored(db_session) == 0

    def test_a_stale_timestamp_is_refused(self, client, db_session, secret):
        payload = raw()
        assert post(client, payload, sign_payload(payload, secret, timestamp=int(time.time()) - 301)).status_code == 400
        assert stored(db_session) == 0
        # Within Stripe's 300 s tolerance it passes.
        assert post(client, payload, sign_payload(payload, secret, timestamp=int(time.time()) - 240)).status_code == 200

    def test_any_of_two_v1_signatures_may_match_during_a_secret_rotation(self, client, db_session, secret):
        payload = raw()
        now = int(time.time())
        header = f"t={now},v1={hmac_hex('whsec_old_secret', now, payload)},v1={hmac_hex(secret, now, payload)}"
        assert post(client, payload, header).status_code == 200
        assert stored(db_session) == 1

    def test_a_v0_signature_alone_is_not_enough(self, client, db_session, secret):
        payload = raw()
        now = int(time.time())
        assert post(client, payload, f"t={now},v0={hmac_hex(secret, now, payload)}").status_code == 400
        assert stored(db_session) == 0

    def test_a_v0_next_to_a_good_v1_is_ignored(self, client, db_session, secret):
        payload = raw()
        now = int(time.time())
        header = f"t={now},v1={hmac_hex(secret, now, payload)},v0=deadbeef"
        assert post(client, payload, header).status_code == 200

    def test_a_missing_header_is_refused(self, client, db_session):
        assert post(client, raw(), None).status_code == 400
        assert stored(db_session) == 0

    def test_the_wrong_secret_is_refused(self, client, db_session):
        payload = raw()
        assert post(client, payload, sign_payload(payload, "whsec_someone_else")).status_code == 400

    def test_a_signed_body_that_is_not_json_is_refused(self, client, db_session, secret):
        payload = b"this is not json"
        assert post(client, payload, sign_payload(payload, secret)).status_code == 400
        assert stored(db_session) == 0

    def test_a_signed_json_that_is_not_an_event_is_refused(self, client, db_session, secret):
        payload = b'["not", "an", "event"]'
        assert post(client, payload, sign_payload(payload, secret)).status_code == 400

    def test_no_csrf_token_is_needed(self, client, db_session, secret):
        # The Flask client sends no CSRF token: the signature is the authentication.
        payload = raw("charge.refunded.json")
        assert post(client, payload, sign_payload(payload, secret)).status_code == 200


class TestInbox:
    def test_a_duplicate_answers_200_and_enqueues_nothing(self, client, db_session, secret, enqueued):
        payload = raw()
        for _ in range(3):
            assert post(client, payload, sign_payload(payload, secret)).status_code == 200
        assert stored(db_session) == 1
        assert [name for name, _, _ in enqueued] == [PROCESS]

    @pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES.glob("*.json")))
    def test_every_real_body_is_accepted(self, client, db_session, secret, name):
        payload = raw(name)
        assert post(client, payload, sign_payload(payload, secret)).status_code == 200
        assert db_session.scalar(fixture_events(StripeEvent.type)) == json.loads(payload)["type"]

    def test_the_answer_does_not_wait_for_a_broken_broker(self, client, db_session, secret, monkeypatch):
        """If publishing fails after commit the event is still stored (the sweep re-publishes it)."""
        from celery.app.task import Task

        def broker_down(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise ConnectionError("redis is down")

        monkeypatch.setattr(Task, "apply_async", broker_down)
        payload = raw()
        assert post(client, payload, sign_payload(payload, secret)).status_code == 200
        assert db_session.scalar(fixture_events(StripeEvent.status)) == StripeEventStatus.RECEIVED


class TestSignatureDates:
    """Issue 16, finding 8: the same 300 s tolerance into the past and into the future."""

    def signed_at(self, secret: str, payload: bytes, timestamp: int) -> str:
        return f"t={timestamp},v1={hmac_hex(secret, timestamp, payload)}"

    @pytest.mark.parametrize("offset", [-301, 301, 3600, 10**9])
    def test_a_signature_dated_outside_the_tolerance_is_refused(self, client, db_session, secret, offset) -> None:
        payload = raw()
        response = post(client, payload, self.signed_at(secret, payload, int(time.time()) + offset))
        assert response.status_code == 400
        assert stored(db_session) == 0

    @pytest.mark.parametrize("offset", [-290, 0, 290])
    def test_a_signature_dated_within_it_is_accepted(self, client, db_session, secret, offset) -> None:
        payload = raw()
        response = post(client, payload, self.signed_at(secret, payload, int(time.time()) + offset))
        assert response.status_code == 200

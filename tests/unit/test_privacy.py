"""Privacy: the seller's export, account deletion and a buyer's erasure, checked by searching
every text and JSON column of every table (tests/trust_support.where_is)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.errors import refusal_status
from app.integrations.storage import FileNotStored, Storage
from app.models import (
    Block,
    CallRequest,
    Checkout,
    EmailStatus,
    EventLog,
    LedgerEntry,
    LedgerKind,
    OutboxEmail,
    PasswordResetToken,
    PayoutRequest,
    Profile,
    Report,
    ReporterRole,
    RequestStatus,
    StripeEvent,
    User,
)
from app.refusals import Refusal
from app.services import privacy, safety
from app.services.accounts import password_matches
from app.services.audit import record_event
from app.services.blocks import erased_email, is_blocked
from app.services.photos import photo_variant_key, profile_photo_prefix
from app.services.safety import ReportDraft
from tasks import photos as photo_tasks
from tests.factories import PASSWORD, AdminFactory, CallRequestFactory, ProfileFactory, TransactionFactory
from tests.trust_support import finished_call, where_is

SELLER_EMAIL = "jane.seller@example.com"
BUYER = "pest@example.org"


@pytest.fixture
def storage(app) -> Storage:  # type: ignore[no-untyped-def]
    """The app's own storage, where the photo-deleting task looks."""
    return app.extensions["storage"]


def seller_with_history(session, storage):  # type: ignore[no-untyped-def]
    """A seller with a bit of everything: photo, calls, money, blocks, mail, reports, events."""
    profile = ProfileFactory(user__email=SELLER_EMAIL, display_name="Jane Seller")
    profile.photo_key = profile_photo_prefix(profile.id) + "a" * 20
    seller = profile.user
    # The current photo, and an earlier one whose deletion failed when it was replaced.
    for key in (profile.photo_key, profile_photo_prefix(profile.id) + "b" * 20):
        for variant in ("512", "thumb"):
            storage.save(photo_variant_key(key, variant), b"jpeg", content_type="image/jpeg")
    done = finished_call(seller=seller, buyer_email="happy@example.org")
    pending = CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email="waiting@example.org"))
    session.add(
        LedgerEntry(
            seller_id=seller.id, kind=LedgerKind.EARNING, amount_cents=800, currency="usd", call_request_id=done.id
        )
    )
    session.add(PayoutRequest(seller_id=seller.id, amount_cents=500, currency="usd", reference="wire 42"))
    session.add(Block(seller_id=seller.id, buyer_email="blocked@example.org"))
    session.add(PasswordResetToken(user_id=seller.id, token_hash="a" * 64, expires_at=utcnow() + timedelta(hours=1)))
    session.add(
        OutboxEmail(
            recipient=SELLER_EMAIL,
            template="request_created_seller",
            context={"seller_email": SELLER_EMAIL, "seller_name": "Jane Seller"},
            status=EmailStatus.SENT,
            subject="New request for Jane",
            text_body=f"Hello {SELLER_EMAIL}",
            html_body=f"<p>Hello {SELLER_EMAIL.upper()}</p>",
        )
    )
    session.add(OutboxEmail(recipient=SELLER_EMAIL, template="request_expired_seller", context={}))
    record_event(session, "auth.login_failed", ref_id=seller.id, payload={"email": SELLER_EMAIL})
    safety.file_report(session, done, ReporterRole.SELLER, ReportDraft("spam", "Spammed me"), now=utcnow())
    session.flush()
    return profile, seller, done, pending


class TestExport:
    def test_holds_everything_about_the_seller_and_no_secret(self, db_session, storage) -> None:
        _profile, seller, done, pending = seller_with_history(db_session, storage)
        # A report against the seller: never part of what they can download.
        safety.file_report(db_session, done, ReporterRole.BUYER, ReportDraft("harassment", "secret"), now=utcnow())

        data = privacy.export_seller_data(db_session, seller.id, now=utcnow())
        text = json.dumps(data)  # it is JSON as is

        assert data["account"]["email"] == SELLER_EMAIL and data["account"]["role"] == "SELLER"
        assert data["profile"]["displayName"] == "Jane Seller"
        assert {r["id"] for r in data["requests"]} == {str(done.id), str(pending.id)}
        assert {t["buyerEmail"] for t in data["transactions"]} == {"happy@example.org", "waiting@example.org"}
        assert [e["amountCents"] for e in data["ledger"]] == [800]
        assert [p["reference"] for p in data["payouts"]] == ["wire 42"]
        assert [b["buyerEmail"] for b in data["blocks"]] == ["blocked@example.org"]
        assert [r["reporterRole"] for r in data["reportsFiled"]] == ["seller"]
        assert "secret" not in text and "harassment" not in text
        assert "passwordHash" not in data["account"] and "$2b$" not in text
        assert all("joinKey" not in r for r in data["requests"]) and done.join_key not in text

    def test_an_unknown_account_is_404(self, db_session) -> None:
        with pytest.raises(Refusal) as refused:
            privacy.export_seller_data(db_session, uuid.uuid4(), now=utcnow())
        assert refusal_status(refused.value) == 404


class TestDeleteAccount:
    def test_leaves_no_trace_of_the_sellers_email_and_keeps_the_money_trail(
        self, app, db_session, storage, settings, enqueued
    ) -> None:
        profile, seller, done, pending = seller_with_history(db_session, storage)
        photo_key, version = profile.photo_key, seller.session_version

        tombstone = privacy.delete_account(db_session, seller.id, password=PASSWORD, now=utcnow())
        db_session.commit()
        # Every photo the profile had goes, by a task (retried while the bucket is unreachable).
        assert ("tasks.photos.delete_profile_photos", (str(profile.id),), {}) in enqueued
        with app.app_context():  # the task runs with this app's storage, as a worker of this app would
            assert photo_tasks.delete_profile_photos(str(profile.id)) == 4

        assert tombstone == f"deleted-{seller.id}@invalid"
        db_session.refresh(seller)
        assert (seller.email, seller.session_version) == (tombstone, version + 1)
        assert seller.deleted_at is not None and not seller.is_active
        assert not password_matches(PASSWORD, seller.password_hash)
        assert db_session.scalar(select(Profile).where(Profile.user_id == seller.id)) is None
        with pytest.raises(FileNotStored):
            storage.open(photo_variant_key(photo_key, "512"))
        assert db_session.scalars(select(Block)).all() == []
        assert db_session.scalars(select(PasswordResetToken)).all() == []

        # Pending requests declined, holds released; the money trail stays.
        assert db_session.get(CallRequest, pending.id).status == RequestStatus.DECLINED
        assert ("tasks.request_payments.release_hold", (str(pending.id),)) in [(n, a) for n, a, _ in enqueued]
        assert db_session.get(CallRequest, done.id).status == RequestStatus.COMPLETED
        assert len(db_session.scalars(select(LedgerEntry)).all()) == 1
        assert len(db_session.scalars(select(PayoutRequest)).all()) == 1
        assert db_session.scalar(select(Report.reporter_role)) == ReporterRole.SELLER

        # The goodbye email is the one row holding the address, until it has been sent.
        assert set(where_is(db_session, SELLER_EMAIL)) == {"email_outbox.recipient"}
        farewell = db_session.scalar(select(OutboxEmail).where(OutboxEmail.template == "account_deleted"))
        farewell.status, farewell.text_body = EmailStatus.SENT, f"Goodbye {SELLER_EMAIL}"
        db_session.flush()
        assert privacy.scrub_farewell_emails(db_session, utcnow(), settings) == {"farewells_scrubbed": 1}
        assert where_is(db_session, SELLER_EMAIL) == {}
        assert where_is(db_session, "jane.seller") == {}
        assert privacy.scrub_farewell_emails(db_session, utcnow(), settings) == {"farewells_scrubbed": 0}

        # Buyers keep their own addresses on their own payments.
        assert {"transactions.buyer_email", "call_requests.buyer_email"} <= set(
            where_is(db_session, "happy@example.org")
        )
        # Mail to the seller that was never sent never will be.
        unsent = db_session.scalar(select(OutboxEmail).where(OutboxEmail.template == "request_expired_seller"))
        assert unsent.status == EmailStatus.FAILED
        assert (
            db_session.scalar(select(EventLog.actor).where(EventLog.type == "account.deleted")) == f"user:{seller.id}"
        )

    def test_a_wrong_password_changes_nothing(self, db_session, storage) -> None:
        profile = ProfileFactory(user__email=SELLER_EMAIL)
        with pytest.raises(Refusal) as refused:
            privacy.delete_account(db_session, profile.user_id, password="wrong", now=utcnow())
        assert (refusal_status(refused.value), next(iter(refused.value.fields), None)) == (403, "password")
        assert db_session.get(User, profile.user_id).deleted_at is None

    def test_refused_while_an_accepted_call_has_not_happened(self, db_session, storage) -> None:
        call = finished_call(status=RequestStatus.ACCEPTED)
        with pytest.raises(Refusal) as refused:
            privacy.delete_account(db_session, call.seller_id, password=PASSWORD, now=utcnow())
        assert (refusal_status(refused.value), refused.value.code) == (409, "call_in_progress")

    def test_a_deleted_account_cannot_be_deleted_again(self, db_session, storage) -> None:
        profile = ProfileFactory()
        privacy.delete_account(db_session, profile.user_id, password=PASSWORD, now=utcnow())
        with pytest.raises(Refusal) as again:
            privacy.delete_account(db_session, profile.user_id, password=PASSWORD, now=utcnow())
        assert refusal_status(again.value) == 404


def seed_buyer_everywhere(session) -> CallRequest:  # type: ignore[no-untyped-def]
    """The buyer's address in every place it can be, in several spellings."""
    seller = ProfileFactory().user
    call = finished_call(seller=seller, buyer_email=BUYER)
    call.note = "Reach me at Pest@Example.org please"
    session.add(
        Checkout(
            seller_id=seller.id,
            buyer_email=BUYER,
            amount_cents=1000,
            currency="usd",
            submission_key="k" * 30,
            expires_at=utcnow(),
        )
    )
    session.add(Block(seller_id=seller.id, buyer_email=BUYER))
    session.add(
        Report(
            seller_id=seller.id,
            call_request_id=call.id,
            buyer_email=BUYER,
            reporter_role=ReporterRole.SELLER,
            reason="spam",
            text=f"{BUYER} kept writing",
        )
    )
    session.add(
        OutboxEmail(
            recipient=BUYER,
            template="payment_received_buyer",
            context={"buyer_email": BUYER, "nested": {"to": [BUYER.upper()]}},
            status=EmailStatus.SENT,
            subject=f"Receipt for {BUYER}",
            text_body=f"To: {BUYER}\nhttps://x.test/?email=pest%40example.org",
            html_body=f"<a href='mailto:{BUYER}'>{BUYER}</a>",
        )
    )
    session.add(OutboxEmail(recipient=BUYER, template="request_declined_buyer", context={}, dedupe_key="pending"))
    record_event(session, "payment.received", ref_id=call.id, payload={"email": BUYER})
    session.add(
        StripeEvent(
            stripe_event_id="evt_erase",
            type="checkout.session.completed",
            payload={"data": {"object": {"customer_details": {"email": "PEST@example.org"}}}},
        )
    )
    session.flush()
    return call


class TestEraseBuyer:
    def test_the_address_is_gone_from_every_table(self, db_session) -> None:
        staff = AdminFactory()
        call = seed_buyer_everywhere(db_session)
        assert len(where_is(db_session, BUYER)) >= 10  # the search really finds it first

        result = privacy.erase_buyer_email(db_session, " PEST@example.org ", admin_id=staff.id, now=utcnow())
        db_session.expire_all()

        assert where_is(db_session, BUYER) == {}
        assert where_is(db_session, "pest%40example.org") == {}
        assert result.tombstone == erased_email(BUYER) and result.rows >= 8
        assert db_session.get(CallRequest, call.id).buyer_email == result.tombstone
        assert db_session.get(CallRequest, call.id).note == f"Reach me at {result.tombstone} please"
        unsent = db_session.scalar(select(OutboxEmail).where(OutboxEmail.dedupe_key == "pending"))
        assert unsent.status == EmailStatus.FAILED  # never sent to a tombstone
        # The block survives in its erased form.
        assert is_blocked(db_session, call.seller_id, BUYER)
        audit = db_session.scalar(select(EventLog).where(EventLog.type == "admin.buyer_erased"))
        assert (audit.ref_id, audit.actor) == (result.tombstone, f"user:{staff.id}")

    def test_other_addresses_are_left_alone_and_a_repeat_changes_nothing(self, db_session) -> None:
        staff = AdminFactory()
        seller = ProfileFactory().user
        near = finished_call(seller=seller, buyer_email="xpest@example.org")
        near.note = "cc pest@example.org.au and pest@example.organic and my.pest@example.org"
        finished_call(seller=seller, buyer_email=BUYER)
        db_session.flush()

        privacy.erase_buyer_email(db_session, BUYER, admin_id=staff.id, now=utcnow())
        db_session.expire_all()
        assert db_session.get(CallRequest, near.id).buyer_email == "xpest@example.org"
        assert db_session.get(CallRequest, near.id).note == near.note

        again = privacy.erase_buyer_email(db_session, BUYER, admin_id=staff.id, now=utcnow())
        assert again.rows == 0

    def test_a_longer_tombstone_never_overflows_a_column(self, db_session) -> None:
        staff = AdminFactory()
        short = "a@b.co"
        db_session.add(OutboxEmail(recipient=short, template="x", context={}, subject=short + " " + "y" * 190))
        db_session.flush()
        privacy.erase_buyer_email(db_session, short, admin_id=staff.id, now=utcnow())
        subject = db_session.scalar(select(OutboxEmail.subject))
        assert len(subject) == 200 and subject.startswith(erased_email(short))

    def test_an_account_address_is_not_a_buyer_to_erase(self, db_session) -> None:
        staff = AdminFactory()
        seller = ProfileFactory().user
        with pytest.raises(Refusal) as refused:
            privacy.erase_buyer_email(db_session, seller.email.upper(), admin_id=staff.id, now=utcnow())
        assert (refusal_status(refused.value), refused.value.code) == (409, "is_account")

    @pytest.mark.parametrize("bad", ["", "no-at-sign", "a b@example.org"])
    def test_a_malformed_address_is_refused(self, db_session, bad: str) -> None:
        with pytest.raises(Refusal) as refused:
            privacy.erase_buyer_email(db_session, bad, admin_id=AdminFactory().id, now=utcnow())
        assert refusal_status(refused.value) == 422


def test_the_sellers_hours_are_exported_and_go_with_the_account(db_session, storage) -> None:  # type: ignore[no-untyped-def]
    from app.models import SellerAvailability
    from app.services.availability import parse_weekly, save_availability

    _profile, seller, _done, _pending = seller_with_history(db_session, storage)
    weekly = parse_weekly([{"day": "wed", "from": "09:00", "to": "12:00"}])
    save_availability(db_session, seller.id, now=utcnow(), idle_seconds=60, time_zone="Europe/Lisbon", weekly=weekly)

    [exported] = privacy.export_seller_data(db_session, seller.id, now=utcnow())["availability"]
    assert exported["timeZone"] == "Europe/Lisbon" and exported["weekly"] == [
        {"day": "wed", "from": "09:00", "to": "12:00"}
    ]

    privacy.delete_account(db_session, seller.id, password=PASSWORD, now=utcnow())
    assert db_session.scalar(select(SellerAvailability).where(SellerAvailability.seller_id == seller.id)) is None

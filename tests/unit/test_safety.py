"""The block list and reports, called directly on real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.db import utcnow
from app.errors import refusal_status
from app.models import (
    Block,
    CallRequest,
    CancelReason,
    EventLog,
    OutboxEmail,
    Report,
    ReporterRole,
    ReportStatus,
    RequestStatus,
)
from app.refusals import Refusal
from app.services import safety
from app.services.blocks import (
    block_buyer_of_request,
    block_email,
    erased_email,
    is_blocked,
    list_blocks,
    unblock,
)
from app.services.safety import ReportDraft
from tests.factories import AdminFactory, CallRequestFactory, ProfileFactory, TransactionFactory
from tests.trust_support import SECRET_KEY, buyer_token, finished_call, seller_token

DRAFT = ReportDraft(reason="harassment", text="Rude from the first second.")


def events(session, type_: str) -> list[EventLog]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(EventLog).where(EventLog.type == type_)))


class TestBlockEmail:
    def test_blocks_a_normalised_address_and_audits_it_without_the_address(self, db_session) -> None:
        seller = ProfileFactory().user
        outcome = block_email(db_session, seller.id, "  Pest@Example.ORG ", now=utcnow())

        assert outcome.created and outcome.block.buyer_email == "pest@example.org"
        assert is_blocked(db_session, seller.id, "PEST@example.org")
        [event] = events(db_session, "block.created")
        assert (event.ref_id, event.actor) == (str(outcome.block.id), f"user:{seller.id}")
        assert "pest" not in str(event.payload)

    def test_a_repeat_is_a_no_op(self, db_session) -> None:
        seller = ProfileFactory().user
        first = block_email(db_session, seller.id, "pest@example.org", now=utcnow())
        second = block_email(db_session, seller.id, "PEST@example.org", now=utcnow())

        assert not second.created and second.block.id == first.block.id
        assert db_session.scalar(select(func.count(Block.id))) == 1
        assert len(events(db_session, "block.created")) == 1

    @pytest.mark.parametrize("bad", ["", "not-an-email", "a@", "@example.org", "two words@example.org"])
    def test_a_malformed_address_is_refused(self, db_session, bad: str) -> None:
        seller = ProfileFactory().user
        with pytest.raises(Refusal):
            block_email(db_session, seller.id, bad, now=utcnow())
        assert db_session.scalar(select(func.count(Block.id))) == 0

    def test_a_block_is_per_seller(self, db_session) -> None:
        one, other = ProfileFactory().user, ProfileFactory().user
        block_email(db_session, one.id, "pest@example.org", now=utcnow())
        assert is_blocked(db_session, one.id, "pest@example.org")
        assert not is_blocked(db_session, other.id, "pest@example.org")

    def test_cancels_the_sellers_pending_requests_from_that_address_and_releases_the_holds(
        self, db_session, enqueued
    ) -> None:
        seller = ProfileFactory().user
        pending = CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email="pest@example.org"))
        accepted = finished_call(seller=seller, buyer_email="pest@example.org", status=RequestStatus.ACCEPTED)
        someone_else = CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email="ok@example.org"))
        other_seller = CallRequestFactory(transaction=TransactionFactory(buyer_email="pest@example.org"))

        outcome = block_email(db_session, seller.id, "pest@example.org", now=utcnow())
        db_session.commit()

        assert outcome.cancelled_request_ids == [pending.id]
        statuses = dict(db_session.execute(select(CallRequest.id, CallRequest.status)).all())
        assert statuses[pending.id] == RequestStatus.CANCELLED
        assert db_session.get(CallRequest, pending.id).cancel_reason == CancelReason.BLOCKED
        assert statuses[accepted.id] == RequestStatus.ACCEPTED
        assert statuses[someone_else.id] == RequestStatus.PENDING
        assert statuses[other_seller.id] == RequestStatus.PENDING
        assert [(name, args) for name, args, _ in enqueued if name == "tasks.request_payments.release_hold"] == [
            ("tasks.request_payments.release_hold", (str(pending.id),))
        ]
        [email] = db_session.scalars(select(OutboxEmail))
        assert (email.recipient, email.template) == ("pest@example.org", "request_declined_buyer")

    def test_from_a_request_blocks_its_buyer(self, db_session) -> None:
        seller = ProfileFactory().user
        call = finished_call(seller=seller, buyer_email="Rude@Example.org")
        outcome = block_buyer_of_request(db_session, seller.id, call.id, now=utcnow())
        assert outcome is not None and outcome.block.buyer_email == "rude@example.org"

    def test_from_another_sellers_request_blocks_nothing(self, db_session) -> None:
        call = finished_call()
        intruder = ProfileFactory().user
        assert block_buyer_of_request(db_session, intruder.id, call.id, now=utcnow()) is None
        assert block_buyer_of_request(db_session, intruder.id, uuid.uuid4(), now=utcnow()) is None
        assert db_session.scalar(select(func.count(Block.id))) == 0


class TestUnblockAndList:
    def test_unblock_removes_it_and_audits(self, db_session) -> None:
        seller = ProfileFactory().user
        block = block_email(db_session, seller.id, "pest@example.org", now=utcnow()).block

        assert unblock(db_session, seller.id, block.id)
        assert not is_blocked(db_session, seller.id, "pest@example.org")
        assert [e.ref_id for e in events(db_session, "block.removed")] == [str(block.id)]
        assert not unblock(db_session, seller.id, block.id)  # a repeat finds nothing

    def test_a_seller_cannot_remove_another_sellers_block(self, db_session) -> None:
        owner, intruder = ProfileFactory().user, ProfileFactory().user
        block = block_email(db_session, owner.id, "pest@example.org", now=utcnow()).block
        assert not unblock(db_session, intruder.id, block.id)
        assert is_blocked(db_session, owner.id, "pest@example.org")

    def test_list_is_the_sellers_own(self, db_session) -> None:
        seller, other = ProfileFactory().user, ProfileFactory().user
        block_email(db_session, seller.id, "a@example.org", now=utcnow())
        block_email(db_session, other.id, "b@example.org", now=utcnow())
        assert [b.buyer_email for b in list_blocks(db_session, seller.id)] == ["a@example.org"]

    def test_a_block_held_under_an_erased_address_still_holds(self, db_session) -> None:
        seller = ProfileFactory().user
        db_session.add(Block(seller_id=seller.id, buyer_email=erased_email("pest@example.org")))
        db_session.flush()
        assert is_blocked(db_session, seller.id, "Pest@example.org")
        assert not is_blocked(db_session, seller.id, "other@example.org")


class TestFileReport:
    def test_the_buyer_reports_the_seller_with_their_token(self, db_session) -> None:
        call = finished_call()
        loaded = safety.buyer_call(db_session, call.id, buyer_token(call), secret_key=SECRET_KEY)
        report = safety.file_report(db_session, loaded, ReporterRole.BUYER, DRAFT, now=utcnow())

        assert (report.reporter_role, report.status, report.reason) == (
            ReporterRole.BUYER,
            ReportStatus.OPEN,
            "harassment",
        )
        assert (report.seller_id, report.buyer_email) == (call.seller_id, call.buyer_email)
        [event] = events(db_session, "report.filed")
        assert (event.ref_id, event.actor) == (str(report.id), "buyer")

    @pytest.mark.parametrize("token", ["", "nonsense", "x" * 500])
    def test_a_wrong_token_is_a_404_like_an_unknown_call(self, db_session, token: str) -> None:
        call = finished_call()
        with pytest.raises(Refusal) as refused:
            safety.buyer_call(db_session, call.id, token, secret_key=SECRET_KEY)
        assert refusal_status(refused.value) == 404
        with pytest.raises(Refusal):
            safety.buyer_call(db_session, uuid.uuid4(), buyer_token(call), secret_key=SECRET_KEY)

    def test_the_sellers_token_does_not_open_the_buyers_report(self, db_session) -> None:
        call = finished_call()
        with pytest.raises(Refusal):
            safety.buyer_call(db_session, call.id, seller_token(call), secret_key=SECRET_KEY)

    def test_once_per_side_and_each_side_once(self, db_session) -> None:
        call = finished_call()
        safety.file_report(db_session, call, ReporterRole.BUYER, DRAFT, now=utcnow())
        with pytest.raises(Refusal) as again:
            safety.file_report(db_session, call, ReporterRole.BUYER, DRAFT, now=utcnow())
        assert (refusal_status(again.value), again.value.code) == (409, "already_reported")

        safety.file_report(db_session, call, ReporterRole.SELLER, DRAFT, now=utcnow())
        assert db_session.scalar(select(func.count(Report.id))) == 2
        assert safety.has_reported(db_session, call.id, ReporterRole.SELLER)

    @pytest.mark.parametrize(
        ("status", "reason", "allowed"),
        [
            (RequestStatus.COMPLETED, None, True),
            (RequestStatus.CANCELLED, CancelReason.BUYER_NO_SHOW, True),
            (RequestStatus.CANCELLED, CancelReason.SELLER_NO_SHOW, True),
            (RequestStatus.CANCELLED, CancelReason.EXPIRED, False),
            (RequestStatus.ACCEPTED, None, False),
            (RequestStatus.PENDING, None, False),
            (RequestStatus.DECLINED, None, False),
        ],
    )
    def test_only_a_call_that_is_over(self, db_session, status, reason, allowed: bool) -> None:
        call = finished_call(status=status, cancel_reason=reason)
        if allowed:
            safety.file_report(db_session, call, ReporterRole.SELLER, DRAFT, now=utcnow())
        else:
            with pytest.raises(Refusal) as refused:
                safety.file_report(db_session, call, ReporterRole.SELLER, DRAFT, now=utcnow())
            assert refused.value.code == "not_reportable"
        assert db_session.scalar(select(func.count(Report.id))) == (1 if allowed else 0)

    def test_admins_are_emailed_without_anyones_address(self, db_session) -> None:
        admins = [AdminFactory(), AdminFactory()]
        call = finished_call(buyer_email="victim@example.org")
        report = safety.file_report(db_session, call, ReporterRole.BUYER, DRAFT, now=utcnow())

        emails = list(db_session.scalars(select(OutboxEmail).order_by(OutboxEmail.recipient)))
        assert sorted(e.recipient for e in emails) == sorted(a.email for a in admins)
        assert {e.template for e in emails} == {"report_received_admin"}
        assert emails[0].context == {"report_id": str(report.id), "role": "buyer", "reason": "Harassment or abuse"}
        assert "victim" not in str(emails[0].context)


class TestCleanDraft:
    def test_accepts_a_category_and_trims(self) -> None:
        assert safety.clean_draft(" Spam ", "  text  ") == ReportDraft(reason="spam", text="text")

    @pytest.mark.parametrize(
        ("reason", "text", "field"), [("", "", "reason"), ("bad", "", "reason"), ("spam", "x" * 2001, "text")]
    )
    def test_refuses(self, reason: str, text: str, field: str) -> None:
        with pytest.raises(Refusal) as refused:
            safety.clean_draft(reason, text)
        assert (refusal_status(refused.value), next(iter(refused.value.fields), None)) == (422, field)

    def test_2000_characters_are_fine(self) -> None:
        assert len(safety.clean_draft("other", "x" * 2000).text) == 2000


class TestResolveReport:
    def test_resolves_once_with_a_note_and_audits_the_admin(self, db_session) -> None:
        admin = AdminFactory()
        report = safety.file_report(db_session, finished_call(), ReporterRole.BUYER, DRAFT, now=utcnow())

        resolved = safety.resolve_report(db_session, report.id, admin_id=admin.id, note=" Warned. ", now=utcnow())
        assert (resolved.status, resolved.resolution_note, resolved.resolved_by_id) == (
            ReportStatus.RESOLVED,
            "Warned.",
            admin.id,
        )
        [event] = events(db_session, "admin.report_resolved")
        assert (event.ref_id, event.actor) == (str(report.id), f"user:{admin.id}")

        with pytest.raises(Refusal) as again:
            safety.resolve_report(db_session, report.id, admin_id=admin.id, note="Again", now=utcnow())
        assert (refusal_status(again.value), again.value.code) == (409, "already_resolved")

    def test_a_note_is_required_and_an_unknown_report_is_404(self, db_session) -> None:
        admin = AdminFactory()
        report = safety.file_report(db_session, finished_call(), ReporterRole.BUYER, DRAFT, now=utcnow())
        with pytest.raises(Refusal) as empty:
            safety.resolve_report(db_session, report.id, admin_id=admin.id, note="  ", now=utcnow())
        assert refusal_status(empty.value) == 422
        assert db_session.get(Report, report.id).status == ReportStatus.OPEN
        with pytest.raises(Refusal) as unknown:
            safety.resolve_report(db_session, uuid.uuid4(), admin_id=admin.id, note="x", now=utcnow())
        assert refusal_status(unknown.value) == 404

    def test_the_queue_is_open_reports_oldest_first(self, db_session) -> None:
        admin = AdminFactory()
        first = safety.file_report(db_session, finished_call(), ReporterRole.BUYER, DRAFT, now=utcnow())
        second = safety.file_report(db_session, finished_call(), ReporterRole.SELLER, DRAFT, now=utcnow())
        done = safety.file_report(db_session, finished_call(), ReporterRole.BUYER, DRAFT, now=utcnow())
        safety.resolve_report(db_session, done.id, admin_id=admin.id, note="ok", now=utcnow())

        assert [row.report.id for row in safety.list_reports(db_session)] == [first.id, second.id]
        assert [row.report.id for row in safety.list_reports(db_session, ReportStatus.RESOLVED)] == [done.id]
        assert len(safety.list_reports(db_session, None)) == 3

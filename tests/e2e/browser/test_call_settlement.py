"""Money follows the real call, in two real Chromiums (the whole product running, the built-in room,
the built-in payment gateway, a loopback-only network namespace):

* two pages whose media cannot connect (the buyer's Chromium runs without
  ``--allow-loopback-in-peer-connection``, so WebRTC has no candidate) are never billed: at the join
  deadline it is a technical failure, the buyer's payment comes back in full, and both pages say why;
* a normal call is billed once;
* the seller who ends the call about 10 s in refunds exactly the unused share, pro rata by the
  seconds both were connected as the server measured them.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from app.config import Settings
from app.db import utcnow
from app.formats import format_money
from app.integrations.builtin_payments import builtin_gateway
from app.integrations.video import BuiltinVideo
from app.models import (
    CallRequest,
    CallSettlement,
    CancelReason,
    EventLog,
    LedgerEntry,
    LedgerKind,
    PaymentState,
    Profile,
    RequestStatus,
    Role,
    SettlementOutcome,
    Transaction,
    User,
)
from app.services import calls
from app.services.calls import CallConfig
from tests.e2e.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, LiveStack, run_axe, separate_stack
from tests.e2e.browser.pages import log_in, unit_of_work, wait_for_remote_video, watch_errors
from tests.factories import PASSWORD_HASH

GROSS, FEE = 1000, 200
LIVE_DURATION = 8  # the live stack's CALL_DURATION_SECONDS
EARLY_DURATION, EARLY_MINIMUM = 40, 5  # the early-end stack's


def paid_call(
    settings: Settings,
    stack: LiveStack,
    redis: Any,
    *,
    duration: int,
    join_window: int = 120,
    engine: Engine | None = None,
) -> tuple[uuid.UUID, dict[str, str]]:
    """An accepted call whose payment the stack's built-in gateway really holds as captured (so
    its refunds go through the gateway and come back as Stripe-shaped webhooks), with its room."""
    tag = uuid.uuid4().hex[:10]
    intent = f"pi_test_{tag}"
    gateway = builtin_gateway(settings.replace(celery_queue=stack.env["CELERY_QUEUE"]), redis, notify=lambda e: None)
    gateway.seed_session(
        {"id": f"cs_test_{tag}", "object": "checkout.session", "status": "complete", "payment_intent": intent},
        {
            "id": intent, "object": "payment_intent", "amount": GROSS, "currency": "usd", "metadata": {},
            "capture_method": "manual", "status": "succeeded", "amount_received": GROSS, "amount_capturable": 0,
        },
    )  # fmt: skip
    now = utcnow()
    with unit_of_work(engine) as session:
        seller = User(email=f"seller-{tag}@example.com", password_hash="!", role=Role.SELLER, email_verified_at=now)
        session.add(seller)
        session.flush()
        session.add(Profile(user_id=seller.id, slug=f"money-{tag}", display_name="Ada Lovelace"))
        transaction = Transaction(
            seller_id=seller.id,
            buyer_email=f"buyer-{tag}@example.org",
            stripe_checkout_session_id=f"cs_test_{tag}",
            stripe_payment_intent_id=intent,
            gross_cents=GROSS,
            platform_fee_cents=FEE,
            net_cents=GROSS - FEE,
            currency="usd",
            payment_state=PaymentState.CAPTURED,
            captured_at=now,
        )
        call = CallRequest(
            seller_id=seller.id,
            transaction=transaction,
            buyer_email=transaction.buyer_email,
            status=RequestStatus.ACCEPTED,
            expires_at=now + timedelta(days=1),
            accepted_at=now,
            join_deadline=now + timedelta(seconds=join_window),
            join_key=secrets.token_urlsafe(32),
        )
        session.add(call)
        session.flush()
        config = CallConfig(settings.secret_key, stack.url, duration)
        calls.provision_room(session, call.id, provider=BuiltinVideo(stack.url), config=config, now=now)
        links = {p: calls.join_url(stack.url, settings.secret_key, call, p) or "" for p in ("buyer", "seller")}
        return call.id, links


def charge_refunded(settings: Settings, stack: LiveStack, redis: Any, call_id: uuid.UUID, engine=None) -> int:  # type: ignore[no-untyped-def]
    """What the gateway itself says was refunded of this call's payment."""
    with unit_of_work(engine) as session:
        intent = session.scalar(
            select(Transaction.stripe_payment_intent_id)
            .join(CallRequest, CallRequest.transaction_id == Transaction.id)
            .where(CallRequest.id == call_id)
        )
    gateway = builtin_gateway(settings.replace(celery_queue=stack.env["CELERY_QUEUE"]), redis, notify=lambda e: None)
    stored = gateway._load("pi", intent or "")
    assert stored is not None
    return int(stored["_charge"]["amount_refunded"])


def wait_until(check, timeout: float, what: str) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def load(call_id: uuid.UUID, engine: Engine | None = None) -> tuple[CallRequest, CallSettlement | None, list[int]]:
    with unit_of_work(engine) as session:
        call = session.scalar(select(CallRequest).where(CallRequest.id == call_id))
        assert call is not None
        session.refresh(call.transaction)
        settled = session.scalar(select(CallSettlement).where(CallSettlement.call_request_id == call_id))
        earnings = list(
            session.scalars(
                select(LedgerEntry.amount_cents).where(
                    LedgerEntry.call_request_id == call_id, LedgerEntry.kind == LedgerKind.EARNING
                )
            )
        )
        session.expunge_all()
        return call, settled, earnings


def seed_admin(engine: Engine | None) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    with unit_of_work(engine) as session:
        session.add(User(email=email, password_hash=PASSWORD_HASH, role=Role.ADMIN, email_verified_at=utcnow()))
    return email


def enter(page, link: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(link)
    page.locator("#join-button:enabled").click(timeout=30000)


@pytest.fixture
def blind_browser(browser) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A second Chromium without ``--allow-loopback-in-peer-connection``: in the loopback-only
    namespace its WebRTC gathers no candidate, so no media can ever connect to it."""
    flags = [flag for flag in CHROMIUM_FLAGS if flag != "--allow-loopback-in-peer-connection"]
    instance = browser.browser_type.launch(executable_path=CHROMIUM, args=flags, headless=True)
    yield instance
    instance.close()


def test_media_that_never_connects_is_not_billed_and_both_see_why(  # type: ignore[no-untyped-def]
    live, settings, app, new_context, blind_browser, artifacts
) -> None:
    redis = app.extensions["redis"]
    call_id, links = paid_call(settings, live, redis, duration=LIVE_DURATION, join_window=25)
    seller = new_context().new_page()
    blind = blind_browser.new_context(viewport={"width": 1200, "height": 900})
    blind.grant_permissions(["camera", "microphone"])
    buyer = blind.new_page()
    problems: list[str] = []
    for page in (seller, buyer):
        watch_errors(page, problems)
    try:
        enter(seller, links["seller"])
        enter(buyer, links["buyer"])
        # Both are in the room, and say so, but the video never connects: the clock never starts.
        seller.locator("#call-status", has_text=re.compile("Connecting your video|could not connect")).wait_for()
        assert buyer.locator("#call-countdown").inner_text() == f"0:{LIVE_DURATION:02d}"
        for page in (seller, buyer):
            page.locator("#call-ended").wait_for(state="visible", timeout=60000)
            outcome = page.locator("#call-outcome").inner_text()
            assert "the video never connected between you" in outcome, outcome
        assert "you are not charged" in buyer.locator("#call-outcome").inner_text()
        assert "no fee is charged, and you earn nothing" in seller.locator("#call-outcome").inner_text()
        assert buyer.locator("#call-problem-link").is_visible()
        buyer.screenshot(path=str(artifacts / "settlement-technical-failure-buyer.png"), full_page=True)
    finally:
        blind.close()
    assert [p for p in problems if "pageerror" in p] == []

    call, settled, earnings = load(call_id)
    assert (call.status, call.cancel_reason, call.started_at) == (
        RequestStatus.CANCELLED,
        CancelReason.TECHNICAL_FAILURE,
        None,
    )
    assert call.buyer_joined_at is not None and call.seller_joined_at is not None
    assert settled is not None
    assert (settled.refund_cents, settled.fee_cents, settled.net_cents) == (GROSS, 0, 0)
    assert earnings == []
    # The worker gave the money back at the gateway, and Stripe's (the twin's) webhook agrees.
    wait_until(lambda: load(call_id)[0].transaction.payment_state == PaymentState.REFUNDED, 30, "the refund")
    assert charge_refunded(settings, live, redis, call_id) == GROSS
    assert load(call_id)[0].transaction.refunded_cents == GROSS


def test_a_normal_call_is_billed_once(live, settings, app, new_context) -> None:  # type: ignore[no-untyped-def]
    redis = app.extensions["redis"]
    call_id, links = paid_call(settings, live, redis, duration=LIVE_DURATION)
    seller, buyer = new_context().new_page(), new_context().new_page()
    enter(seller, links["seller"])
    enter(buyer, links["buyer"])
    for page in (seller, buyer):
        wait_for_remote_video(page)
    for page in (seller, buyer):
        page.locator("#call-outcome").wait_for(state="visible", timeout=(LIVE_DURATION + 15) * 1000)
    assert (
        buyer.locator("#call-outcome").inner_text()
        == f"The call ran its full {LIVE_DURATION} s. You were charged $10.00."
    )
    assert seller.locator("#call-outcome").inner_text() == (
        f"The call ran its full {LIVE_DURATION} s. You earn $8.00 ($10.00 less the $2.00 platform fee)."
    )

    call, settled, earnings = load(call_id)
    assert call.status == RequestStatus.COMPLETED and call.ended_by in ("timer", "sweep")
    assert settled is not None and settled.outcome == SettlementOutcome.COMPLETED
    assert (settled.refund_cents, settled.fee_cents, settled.net_cents) == (0, FEE, GROSS - FEE)
    assert earnings == [GROSS - FEE]
    time.sleep(2)  # anything that would refund or charge again has had its chance
    call, _, earnings = load(call_id)
    assert (call.transaction.payment_state, call.transaction.refunded_cents) == (PaymentState.CAPTURED, 0)
    assert charge_refunded(settings, live, redis, call_id) == 0
    assert earnings == [GROSS - FEE]
    with unit_of_work() as session:
        started = select(func.count()).where(EventLog.ref_id == str(call_id), EventLog.type == "call.started")
        assert session.scalar(started) == 1


@pytest.fixture(scope="module")
def early_stack(app, settings, artifacts) -> Iterator[tuple[LiveStack, Engine]]:  # type: ignore[no-untyped-def]
    """Calls of 40 s, whose early end refunds in full only under 5 s of connected time."""
    with separate_stack(
        settings,
        artifacts / "logs-early-end",
        CALL_DURATION_SECONDS=str(EARLY_DURATION),
        EARLY_END_MINIMUM_SECONDS=str(EARLY_MINIMUM),
        SWEEP_INTERVAL_SECONDS="1",
    ) as (stack, engine):
        yield stack, engine


def test_the_seller_ends_after_about_10_s_and_the_refund_is_the_exact_pro_rata_share(  # type: ignore[no-untyped-def]
    early_stack, settings, app, new_context, artifacts
) -> None:
    stack, engine = early_stack
    redis = app.extensions["redis"]
    call_id, links = paid_call(settings, stack, redis, duration=EARLY_DURATION, engine=engine)
    seller, buyer = new_context().new_page(), new_context().new_page()
    enter(seller, links["seller"])
    enter(buyer, links["buyer"])
    for page in (seller, buyer):
        wait_for_remote_video(page)
    # About 10 s into the call, by the page's own countdown from the server's clock.
    seller.wait_for_function("() => /^0:(2\\d|30)$/.test(document.getElementById('call-countdown').textContent)")
    shown_elapsed = EARLY_DURATION - int(seller.locator("#call-countdown").inner_text().split(":")[1])
    seller.once("dialog", lambda dialog: dialog.accept())
    seller.locator("#end-button").click()
    for name, page in (("seller", seller), ("buyer", buyer)):
        try:
            page.locator("#call-outcome").wait_for(state="visible", timeout=15000)
        except Exception:
            page.screenshot(path=str(artifacts / f"settlement-early-end-{name}-failed.png"), full_page=True)
            raise AssertionError(f"the {name}'s page shows no outcome: {page.locator('#call').inner_text()}") from None

    call, settled, earnings = load(call_id, engine)
    assert settled is not None and settled.outcome == SettlementOutcome.SELLER_ENDED_EARLY
    assert call.ended_by == "seller"
    # At least what the page had counted when the seller clicked, and short of the full call (a
    # loaded machine may take a few seconds between the click and the server's end).
    assert shown_elapsed - 1 <= settled.connected_seconds < EARLY_DURATION - 5
    kept = GROSS * settled.connected_seconds // EARLY_DURATION  # rounded down: the odd cent to the buyer
    fee = (FEE * kept * 2 + GROSS) // (2 * GROSS)
    assert (settled.refund_cents, settled.fee_cents, settled.net_cents) == (GROSS - kept, fee, kept - fee)
    assert earnings == [kept - fee]
    refund = format_money(GROSS - kept, "usd")
    told = buyer.locator("#call-outcome").inner_text()
    assert re.search(rf"you (will be|have been) refunded {re.escape(refund)} for the unused time", told), told
    assert f"the buyer is refunded {refund}" in seller.locator("#call-outcome").inner_text()
    buyer.screenshot(path=str(artifacts / "settlement-seller-ended-early-buyer.png"), full_page=True)
    # The gateway refunds exactly that, once, and its webhook brings the same figure back.
    wait_until(lambda: load(call_id, engine)[0].transaction.refunded_cents == GROSS - kept, 30, "the partial refund")
    assert charge_refunded(settings, stack, redis, call_id, engine) == GROSS - kept
    assert load(call_id, engine)[0].transaction.payment_state == PaymentState.CAPTURED

    # The buyer reports a problem from the end screen; an admin refunds the rest from the disputes queue.
    buyer.locator("#call-problem-link").click()
    buyer.get_by_label("We could not see or hear each other").check()
    buyer.get_by_label("Tell us more (optional)").fill("The picture froze before the end.")
    assert run_axe(buyer) == []
    buyer.get_by_role("button", name="Send report").click()
    buyer.locator("#problem-filed").wait_for()
    admin = new_context().new_page()
    log_in(admin, stack.url, seed_admin(engine))
    admin.goto(f"{stack.url}/admin/disputes")
    case = admin.locator(".problem-case").first
    assert "The picture froze before the end." in case.inner_text()
    assert "seller ended early" in case.inner_text() and f"{refund} refunded" in case.inner_text()
    assert run_axe(admin) == []
    admin.screenshot(path=str(artifacts / "settlement-admin-problem-case.png"), full_page=True)
    case.get_by_role("button", name="Refund").click()
    admin.locator(".flash", has_text=f"Refunded {format_money(kept, 'usd')}").wait_for()
    wait_until(lambda: load(call_id, engine)[0].transaction.refunded_cents == GROSS, 30, "the admin's refund")
    assert load(call_id, engine)[0].transaction.payment_state == PaymentState.REFUNDED
    assert charge_refunded(settings, stack, redis, call_id, engine) == GROSS
    with unit_of_work(engine) as session:
        reversals = session.scalars(
            select(LedgerEntry.amount_cents).where(LedgerEntry.kind == LedgerKind.REVERSAL)
        ).all()
    assert reversals == [-(kept - fee)]  # all the seller earned from the call, once


def test_the_rules_are_on_the_terms_page(live, new_context) -> None:  # type: ignore[no-untyped-def]
    page = new_context().new_page()
    page.goto(f"{live.url}/terms#settlement")
    table = page.locator("#settlement table")
    assert "The seller ends the call early" in table.inner_text()
    assert "1 min connected" in table.inner_text()
    assert run_axe(page) == []

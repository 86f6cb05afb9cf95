"""The settlement of a call: the split (a property test: for any price, fee and connected seconds,
refund + seller net + fee = gross, none negative, the odd cent to the buyer), what each outcome
writes, and the buyer's partial refund through the gateway."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.db import utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.models import CallSettlement, LedgerEntry, LedgerKind, PaymentState, SettlementOutcome
from app.services import call_endings, fees, media_presence, settlement_text
from app.services.calls import CallConfig
from app.services.lifecycle import settlement
from tests.call_helpers import FakeGateway, accepted_call

prices = st.integers(min_value=1, max_value=10_000_000)
durations = st.integers(min_value=1, max_value=7200)


@given(
    gross=prices,
    fee_share=st.fractions(min_value=0, max_value=1),
    connected=st.integers(min_value=-10, max_value=10_000),
    duration=durations,
    minimum=st.integers(min_value=0, max_value=600),
)
@example(gross=1000, fee_share=0.2, connected=130, duration=300, minimum=60)
@example(gross=1, fee_share=1, connected=299, duration=300, minimum=0)
@example(gross=999, fee_share=0, connected=1, duration=3, minimum=0)
def test_an_early_end_always_adds_up(gross, fee_share, connected, duration, minimum) -> None:  # type: ignore[no-untyped-def]
    fee = int(gross * fee_share)
    split = fees.early_end_split(
        gross, fee, connected_seconds=connected, duration_seconds=duration, minimum_seconds=minimum
    )

    assert split.refund_cents + split.fee_cents + split.net_cents == gross
    assert min(split.refund_cents, split.fee_cents, split.net_cents) >= 0
    used = min(max(connected, 0), duration)
    if used < minimum:
        assert split == fees.Split(gross, 0, 0)
    else:
        # The buyer pays at most their share of the time (any odd cent stays with them)...
        assert split.kept_cents * duration <= gross * used
        # ... and never a whole cent less than it.
        assert (split.kept_cents + 1) * duration > gross * used
        # The fee on the kept part is the call's fee scaled to it, never more than was kept.
        assert split.fee_cents <= fee and split.fee_cents <= split.kept_cents
        assert abs(split.fee_cents * gross - fee * split.kept_cents) <= gross


@given(gross=prices, bps=st.integers(min_value=0, max_value=10_000), connected=st.integers(0, 400))
def test_with_the_platform_fee_as_configured(gross, bps, connected) -> None:  # type: ignore[no-untyped-def]
    fee, _ = fees.split_fee(gross, bps)
    split = fees.early_end_split(gross, fee, connected_seconds=connected, duration_seconds=300, minimum_seconds=60)
    assert split.refund_cents + split.fee_cents + split.net_cents == gross
    assert min(split.refund_cents, split.fee_cents, split.net_cents) >= 0


@given(gross=prices, fee_share=st.fractions(min_value=0, max_value=1))
def test_every_other_outcome_adds_up_too(gross, fee_share) -> None:  # type: ignore[no-untyped-def]
    fee = int(gross * fee_share)
    for split in (fees.keep_all(gross, fee), fees.refund_all(gross)):
        assert split.refund_cents + split.fee_cents + split.net_cents == gross
        assert min(split.refund_cents, split.fee_cents, split.net_cents) >= 0


@given(earned=st.integers(0, 10**6), kept=st.integers(0, 10**6), refund=st.integers(-5, 10**6))
def test_a_reversal_never_takes_more_than_was_earned(earned, kept, refund) -> None:  # type: ignore[no-untyped-def]
    share = fees.reversal_share(earned, kept, refund)
    assert 0 <= share <= max(earned, 0)
    if kept > 0 and refund > 0 and refund >= kept:
        assert share == max(earned, 0)


def test_durations_read_like_people_say_them() -> None:
    assert [settlement_text.duration_text(s) for s in (0, 45, 60, 130, 300)] == [
        "0 s",
        "45 s",
        "1 min",
        "2 min 10 s",
        "5 min",
    ]


def test_the_rules_carry_the_configured_minimum() -> None:
    rules = settlement_text.rules(90)
    assert any("1 min 30 s connected" in buyer for _, buyer, _ in rules)
    assert len(rules) == len(settlement_text.RULES)


# --- Written once, by the move that ends the call --------------------------------------------------


@pytest.fixture
def config(settings) -> CallConfig:
    return CallConfig.from_settings(settings)


def started(session, *, seconds_ago: int = 200):  # type: ignore[no-untyped-def]
    """A call both parties have been connected to since it started (their pages' heartbeats)."""
    start = utcnow() - timedelta(seconds=seconds_ago)
    call = accepted_call(now=start - timedelta(seconds=30))
    call.started_at, call.ends_at = start, start + timedelta(seconds=300)
    session.flush()
    for party in ("buyer", "seller"):
        for beat in range(0, seconds_ago + 1, 4):
            media_presence.page_connected(session, call.id, party, f"{party}-w", start + timedelta(seconds=beat))
    return call


def test_a_seller_ending_early_is_settled_once_with_the_exact_split(db_session, config, enqueued) -> None:
    call = started(db_session, seconds_ago=200)
    end = call.started_at + timedelta(seconds=100)
    call_endings.end_call(db_session, call.id, ended_by="seller", config=config, now=end)
    call_endings.end_call(db_session, call.id, ended_by="seller", config=config, now=end + timedelta(seconds=5))
    db_session.commit()

    settled = settlement.settlement_of(db_session, call.id)
    assert settled is not None
    assert (settled.outcome, settled.connected_seconds) == (SettlementOutcome.SELLER_ENDED_EARLY, 100)
    # $10.00 over 300 s, 100 s kept: $3.33 (the odd third of a cent to the buyer), fee 20% of it.
    assert (settled.refund_cents, settled.fee_cents, settled.net_cents) == (667, 67, 266)
    [earning] = db_session.scalars(select(LedgerEntry).where(LedgerEntry.call_request_id == call.id))
    assert (earning.kind, earning.amount_cents) == (LedgerKind.EARNING, 266)
    assert enqueued.names().count("tasks.call_endings.refund_buyer") == 1


def test_the_partial_refund_goes_through_the_gateway_with_its_amount_and_one_key(db_session, config) -> None:
    call = started(db_session)
    call_endings.end_call(
        db_session, call.id, ended_by="seller", config=config, now=call.started_at + timedelta(seconds=100)
    )
    gateway = FakeGateway()
    amounts: list[int | None] = []
    original = gateway.refund

    def refund(intent, *, idempotency_key, amount_cents=None):  # type: ignore[no-untyped-def]
        amounts.append(amount_cents)
        return original(intent, idempotency_key=idempotency_key, amount_cents=amount_cents)

    gateway.refund = refund  # type: ignore[method-assign]
    now = utcnow()
    assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=now) == "refunded"
    assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=now) == "unchanged"

    assert amounts == [667]
    assert gateway.calls == [("refund", call.transaction.stripe_payment_intent_id, f"refund:{call.id}")]
    db_session.refresh(call.transaction)
    assert (call.transaction.payment_state, call.transaction.refunded_cents) == (PaymentState.CAPTURED, 667)


def test_the_built_in_gateway_refunds_exactly_the_unused_share(db_session, app, settings, config, redis) -> None:
    """The built-in twin, like Stripe, takes ``amount`` and remembers the key: a retry refunds once."""
    events: list[dict] = []
    gateway = builtin_gateway(settings, redis, notify=events.append)
    call = started(db_session)
    intent = "pi_test_" + call.id.hex
    gateway.seed_session(
        {"id": "cs_test_" + call.id.hex, "status": "complete", "payment_intent": intent},
        {
            "id": intent,
            "status": "succeeded",
            "amount": 1000,
            "amount_received": 1000,
            "currency": "usd",
            "metadata": {},
        },
    )
    call.transaction.stripe_payment_intent_id = intent
    db_session.flush()
    call_endings.end_call(
        db_session, call.id, ended_by="seller", config=config, now=call.started_at + timedelta(seconds=100)
    )

    assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "refunded"
    # As if the task died before its commit: the retry meets the same key and the same answer.
    db_session.execute(
        update(CallSettlement).where(CallSettlement.call_request_id == call.id).values(refund_done_at=None)
    )
    assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "refunded"
    [refunded] = [e["data"]["object"] for e in events if e["type"] == "charge.refunded"]
    assert (refunded["amount_refunded"], refunded["refunded"]) == (667, False)


def test_buyer_no_show_and_completed_keep_the_fee_and_pay_the_net(db_session, config) -> None:
    call = started(db_session, seconds_ago=301)
    call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
    settled = settlement.settlement_of(db_session, call.id)
    assert settled is not None
    assert (settled.outcome, settled.refund_cents, settled.fee_cents, settled.net_cents) == (
        SettlementOutcome.COMPLETED,
        0,
        200,
        800,
    )
    assert settlement_text.describe(call, settled, "buyer") == "The call ran its full 5 min. You were charged $10.00."
    assert settlement_text.describe(call, settled, "seller") == (
        "The call ran its full 5 min. You earn $8.00 ($10.00 less the $2.00 platform fee)."
    )


def test_a_dispute_of_what_the_buyer_kept_paying_holds_all_the_seller_earned(db_session, config) -> None:
    from app.services.lifecycle import payments

    call = started(db_session)
    call_endings.end_call(
        db_session, call.id, ended_by="seller", config=config, now=call.started_at + timedelta(seconds=100)
    )
    payments.open_dispute(db_session, call.transaction, {"id": "dp_1", "amount": 333}, now=utcnow())
    held = db_session.scalar(
        select(LedgerEntry.amount_cents).where(
            LedgerEntry.call_request_id == call.id, LedgerEntry.kind == LedgerKind.DISPUTE_HOLD
        )
    )
    assert held == -266  # the whole kept part's net, not 266 x 333 / 1000

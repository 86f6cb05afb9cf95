"""What a settled call means for each party's money, in plain words: the end screen, the status
page and the emails all say it with these sentences, so both parties read the same facts.

The rules themselves are listed once in ``RULES`` (shown on the paywall, on the dashboard before
accepting and on the terms page by ``templates/_settlement_rules.html``); the sentences here apply
them to one call's settlement (``app.services.lifecycle.settlement``).
"""

from __future__ import annotations

from datetime import datetime

from app.formats import format_money
from app.models import CallRequest, CallSettlement, PaymentState, SettlementOutcome

# (what happened, the buyer, the seller): the Settlement table, for people.
RULES: tuple[tuple[str, str, str], ...] = (
    (
        "The seller declines, does not answer in time, or cannot take the call",
        "The hold on your card is released: you pay nothing.",
        "Nothing.",
    ),
    (
        "The seller does not join within the join window",
        "Your money back in full.",
        "Nothing.",
    ),
    (
        "The buyer does not join within the join window",
        "Charged: the seller kept the time free.",
        "Paid the price less the platform fee.",
    ),
    (
        "Both join but the video never connects between you (a technical failure)",
        "Your money back in full, no fee.",
        "Nothing, and no fee either.",
    ),
    (
        "The buyer cancels a call booked for later",
        "Your money back in full up to {notice} before the start; later, charged as if you had not come.",
        "Nothing if in time; later, paid the price less the platform fee.",
    ),
    (
        "The call runs to its end, or the buyer ends it early",
        "Charged the price.",
        "Paid the price less the platform fee.",
    ),
    (
        "The seller ends the call early",
        "Refunded the unused time, pro rata to the seconds you were both connected (all of it under "
        "{minimum} connected).",
        "Paid the part kept, less the platform fee on that part.",
    ),
    (
        "Something went wrong and you report it within 48 hours of the end",
        "ChatLink looks at what the server measured and may refund you in full or in part.",
        "A refund granted is taken back from your balance.",
    ),
)

PARTY_NAMES = {"buyer": "the buyer", "seller": "the seller"}


def rules(minimum_seconds: int, cancel_notice_seconds: int = 86400) -> list[tuple[str, str, str]]:
    """``RULES`` with this deployment's early-end minimum and cancellation notice filled in."""
    hours = cancel_notice_seconds / 3600
    notice = f"{hours:g} hours" if cancel_notice_seconds >= 3600 else duration_text(cancel_notice_seconds)
    filled = {"minimum": duration_text(minimum_seconds), "notice": notice}
    return [(what, buyer.format(**filled), seller) for what, buyer, seller in RULES]


def duration_text(seconds: int) -> str:
    """``2 min 10 s``, ``45 s``, ``5 min``."""
    seconds = max(0, int(seconds))
    minutes, rest = divmod(seconds, 60)
    if minutes and rest:
        return f"{minutes} min {rest} s"
    return f"{minutes} min" if minutes else f"{rest} s"


def describe(call: CallRequest, settlement: CallSettlement, party: str) -> str:
    """One sentence or two: what happened to this call and what it means for ``party``'s money."""
    money = _Money(settlement)
    buyer = party == "buyer"
    elapsed = duration_text(_seconds(call.started_at, call.ended_at))
    match settlement.outcome:
        case SettlementOutcome.TECHNICAL_FAILURE:
            return _technical_failure(call, buyer, money)
        case SettlementOutcome.SELLER_NO_SHOW:
            if buyer:
                return f"The seller did not join in time, so the call was cancelled: {money.back(call)}."
            return (
                "You did not join in time, so the call was cancelled and the buyer gets their money back; "
                "you earn nothing for it."
            )
        case SettlementOutcome.BUYER_NO_SHOW:
            if buyer:
                return (
                    "You did not join in time, so the call was cancelled. The seller kept the time free, "
                    f"so you were charged {money.gross}."
                )
            return f"The buyer did not join in time. The call counts as done: you earn {money.earned}."
        case SettlementOutcome.SELLER_ENDED_EARLY:
            return _seller_ended(call, settlement, buyer, money, elapsed)
        case SettlementOutcome.BUYER_ENDED:
            if buyer:
                return (
                    f"You ended the call after {elapsed}. Ending early does not change the price: "
                    f"you were charged {money.gross}."
                )
            return f"The buyer ended the call after {elapsed}. You are paid in full: you earn {money.earned}."
    length = duration_text(_seconds(call.started_at, call.ends_at))
    if buyer:
        return f"The call ran its full {length}. You were charged {money.gross}."
    return f"The call ran its full {length}. You earn {money.earned}."


def _technical_failure(call: CallRequest, buyer: bool, money: _Money) -> str:
    first = "You both joined, but the video never connected between you, so the call could not take place."
    if buyer:
        return f"{first} It is a technical failure, not anyone's fault: {money.back(call)}."
    return (
        f"{first} It counts as a technical failure: the buyer gets their {money.gross} back, "
        "no fee is charged, and you earn nothing for it."
    )


def _seller_ended(call: CallRequest, settlement: CallSettlement, buyer: bool, money: _Money, elapsed: str) -> str:
    connected = duration_text(settlement.connected_seconds)
    after = f"after {elapsed}" + ("" if connected == elapsed else f" ({connected} of it connected)")
    if settlement.refund_cents >= settlement.gross_cents:
        if buyer:
            return f"The seller ended the call {after}, too early for a paid call: {money.back(call)}."
        return (
            f"You ended the call {after}, too early for a paid call: the buyer gets their {money.gross} back "
            "and you earn nothing for it."
        )
    if buyer:
        return f"The seller ended the call {after}: {money.refund_phrase()} for the unused time, and pay {money.kept}."
    return (
        f"You ended the call {after}: the buyer is refunded {money.refund} for the unused time. "
        f"You earn {money.net} (the {money.kept} kept, less the {money.fee} platform fee on it)."
    )


class _Money:
    def __init__(self, settlement: CallSettlement) -> None:
        self.settlement = settlement
        currency = settlement.currency
        self.gross = format_money(settlement.gross_cents, currency)
        self.refund = format_money(settlement.refund_cents, currency)
        self.kept = format_money(settlement.gross_cents - settlement.refund_cents, currency)
        self.fee = format_money(settlement.fee_cents, currency)
        self.net = format_money(settlement.net_cents, currency)

    @property
    def earned(self) -> str:
        return f"{self.net} ({self.kept} less the {self.fee} platform fee)"

    def refund_phrase(self) -> str:
        done = self.settlement.refund_done_at is not None
        return f"you {'have been' if done else 'will be'} refunded {self.refund}"

    def back(self, call: CallRequest) -> str:
        """The buyer's whole payment coming back: a released hold, or a refund."""
        done = self.settlement.refund_done_at is not None
        if call.transaction.payment_state in (PaymentState.HELD, PaymentState.VOIDED):
            released = "was released" if done else "will be released"
            return f"you are not charged, and the hold of {self.gross} on your card {released}"
        return f"you are not charged: {self.refund_phrase()} in full"


def _seconds(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(0, int((end - start).total_seconds()))

"""The allowed moves of a call request and of its payment: the single source of truth.

Every write of ``CallRequest.status`` or ``Transaction.payment_state`` goes through
``app.services.lifecycle._moves``, which looks the move up here and turns it into ONE conditional
UPDATE ``... SET status = <target> WHERE status IN (<sources>) AND ...``. A move that is not in
this table cannot be made, and a move whose row is no longer in a source state changes nothing:
that is what makes a double click, two workers or a click racing the sweep harmless (the loser
matches no row), in the spirit of indico's payment transactions.

``docs/lifecycle.md`` shows the diagram drawn from these tables (``state_diagram()``); a test
fails when the two drift.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.models import PaymentState, RequestStatus

S = TypeVar("S", bound=enum.Enum)

PENDING, ACCEPTED, DECLINED, CANCELLED, COMPLETED = (
    RequestStatus.PENDING,
    RequestStatus.ACCEPTED,
    RequestStatus.DECLINED,
    RequestStatus.CANCELLED,
    RequestStatus.COMPLETED,
)
HELD, CAPTURED, VOIDED, REFUNDED, DISPUTED, CHARGED_BACK = (
    PaymentState.HELD,
    PaymentState.CAPTURED,
    PaymentState.VOIDED,
    PaymentState.REFUNDED,
    PaymentState.DISPUTED,
    PaymentState.CHARGED_BACK,
)


@dataclass(frozen=True)
class Move(Generic[S]):
    name: str
    sources: tuple[S, ...]
    target: S
    label: str  # what happened, as the diagram says it (no colon: Mermaid ends a label there)


REQUEST_MOVES: dict[str, Move[RequestStatus]] = {
    move.name: move
    for move in (
        Move("accept", (PENDING,), ACCEPTED, "seller accepts, for right now"),
        Move("accept_for_later", (PENDING,), ACCEPTED, "seller accepts one of the buyer's proposed times"),
        Move("decline", (PENDING,), DECLINED, "seller declines, or is suspended or deleted"),
        Move("expire", (PENDING,), CANCELLED, "no answer in time or every proposed time passed, reason expired"),
        Move("cancel_pending", (PENDING,), CANCELLED, "the seller blocks the buyer, reason blocked"),
        Move("buyer_cancel_pending", (PENDING,), CANCELLED, "the buyer cancels while pending, reason buyer_cancelled"),
        Move("ask_reschedule", (ACCEPTED,), ACCEPTED, "a party asks to move a scheduled call, once per call"),
        Move("reschedule", (ACCEPTED,), ACCEPTED, "the other party confirms the new time"),
        Move("keep_schedule", (ACCEPTED,), ACCEPTED, "the other party keeps the agreed time"),
        Move("buyer_cancel", (ACCEPTED,), CANCELLED, "the buyer cancels in time, reason buyer_cancelled"),
        Move("buyer_cancel_late", (ACCEPTED,), CANCELLED, "the buyer cancels inside the notice, reason buyer_no_show"),
        Move("start_clock", (ACCEPTED,), ACCEPTED, "both parties' media connected, the clock starts"),
        Move("complete", (ACCEPTED,), COMPLETED, "time is up, or a party ends it, settled by who ended it and when"),
        Move("fail_payment", (ACCEPTED,), CANCELLED, "capture refused, reason payment_failed"),
        Move("no_show", (ACCEPTED,), CANCELLED, "join window passed, reason buyer_no_show or seller_no_show"),
        Move(
            "technical_failure",
            (ACCEPTED,),
            CANCELLED,
            "join window passed, both joined but media never connected, reason technical_failure",
        ),
    )
}

PAYMENT_MOVES: dict[str, Move[PaymentState]] = {
    move.name: move
    for move in (
        Move("capture", (HELD,), CAPTURED, "the seller accepted, hold captured"),
        Move("void", (HELD,), VOIDED, "hold released"),
        Move("refund", (CAPTURED, HELD), REFUNDED, "refunded in full, also a hold the gateway captured meanwhile"),
        Move("refund_synced", (HELD, CAPTURED, VOIDED), REFUNDED, "Stripe reports a full refund"),
        Move("dispute", (HELD, CAPTURED, VOIDED, REFUNDED), DISPUTED, "the buyer's bank opened a dispute"),
        Move("dispute_won", (DISPUTED,), CAPTURED, "dispute closed in our favour"),
        Move("dispute_lost", (DISPUTED,), CHARGED_BACK, "dispute lost, the money went back to the buyer"),
    )
}

# How a request can start: the paid checkout's webhook creates it.
REQUEST_ENTRIES: tuple[tuple[RequestStatus, str], ...] = (
    (PENDING, "paid, the card is held"),
    (CANCELLED, "paid, but the buyer is blocked or the seller suspended"),
)
PAYMENT_ENTRIES: tuple[tuple[PaymentState, str], ...] = (
    (HELD, "checkout with manual capture"),
    (CAPTURED, "checkout with PAYMENT_CAPTURE=immediate"),
)


def state_diagram() -> str:
    """Both state machines as Mermaid ``stateDiagram-v2`` blocks, for ``docs/lifecycle.md``."""
    return "\n".join(
        (
            _diagram("Call request (`CallRequest.status`)", REQUEST_ENTRIES, REQUEST_MOVES),
            "",
            _diagram("Payment (`Transaction.payment_state`)", PAYMENT_ENTRIES, PAYMENT_MOVES),
        )
    )


def _diagram(title: str, entries: tuple[tuple[S, str], ...], moves: dict[str, Move[S]]) -> str:
    lines = [f"### {title}", "", "```mermaid", "stateDiagram-v2"]
    lines += [f"    [*] --> {state.name}: {label}" for state, label in entries]
    for move in moves.values():
        lines += [f"    {source.name} --> {move.target.name}: {move.name} ({move.label})" for source in move.sources]
    return "\n".join([*lines, "```"])

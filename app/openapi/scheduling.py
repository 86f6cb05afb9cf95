"""Calls at an agreed time: a seller's availability, and what the two parties of a call booked
for later may do before it (move it once; the buyer may cancel). The proposed times themselves
travel with the checkout (``proposedStarts``, ``timeZone``) and the seller's accept (``startAt``)."""

from __future__ import annotations

from typing import Any

from app.openapi._build import (
    OPTIONAL_TIME,
    STRING,
    TIME,
    UUID,
    Schema,
    array,
    nullable,
    obj,
    operation,
    path_param,
    ref,
)

TAG = (
    "Scheduling",
    'Weekly hours and the "available now" switch of a seller (session), and the changes the parties of a call '
    "booked for later make with their call credential.",
)

_DAY = {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}
_CLOCK = {"type": "string", "pattern": "^([01][0-9]|2[0-4]):[0-5][0-9]$", "description": "HH:MM in the seller's zone."}
_ZONE = {"type": "string", "maxLength": 64, "examples": ["Europe/Paris"], "description": "An IANA time zone."}
SCHEMAS: dict[str, Schema] = {
    "Availability": obj(
        ("timeZone", "weekly", "availableNow"),
        timeZone=_ZONE,
        weekly=array(obj(("day", "from", "to"), day=_DAY, **{"from": _CLOCK, "to": _CLOCK})),
        availableNow={"type": "boolean"},
        availableNowUntil=OPTIONAL_TIME,
    ),
    "CallSchedule": obj(
        ("id", "status", "scheduledStart"),
        id=UUID,
        status=STRING,
        cancelReason=nullable(STRING),
        scheduledStart=OPTIONAL_TIME,
        joinOpensAt=OPTIONAL_TIME,
        joinDeadline=OPTIONAL_TIME,
        reschedule=nullable(
            obj(
                ("startAt", "askedBy", "answered"),
                startAt=TIME,
                askedBy={"type": "string", "enum": ["buyer", "seller"]},
                answered={"type": "boolean"},
            )
        ),
    ),
}
_REQUEST_ID = path_param("request_id", UUID, "The call.")
_TOKEN = {"type": "string", "maxLength": 128, "description": "The `t` of the party's call link."}
_CALL = obj(("call",), call=ref("CallSchedule"))


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], **kwargs)


def _call_op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(
        summary, tag=TAG[0], auth="call", parameters=[_REQUEST_ID], ok={200: _CALL}, errors=(409,), **kwargs
    )


PATHS: dict[str, dict[str, Any]] = {
    "/api/availability": {
        "get": _op("Your availability", ok={200: ref("Availability")}),
        "post": _op(
            "Set your availability",
            changes=True,
            description="Send only what changes. `weekly` replaces the week: windows in your own zone, `to` after "
            '`from` (24:00 at the latest), no overlaps, at most 21. `availableNow` shows "Available now" on your '
            "paywall until you have been away from your dashboard for AVAILABLE_NOW_IDLE_SECONDS.",
            body=obj(
                timeZone=_ZONE,
                weekly=array(obj(("day", "from", "to"), day=_DAY, **{"from": _CLOCK, "to": _CLOCK})),
                availableNow={"type": "boolean"},
            ),
            ok={200: ref("Availability")},
        ),
    },
    "/api/availability/heartbeat": {
        "post": _op(
            "Still here",
            changes=True,
            description='Sent by the open dashboard: an "available now" still on stays on another idle period.',
            ok={200: obj(("availableNow",), availableNow={"type": "boolean"}, availableNowUntil=OPTIONAL_TIME)},
        )
    },
    "/api/calls/{request_id}/reschedule": {
        "post": _call_op(
            "Ask to move a booked call",
            description="Once per call, by either party, until the room opens; the other party confirms. A buyer's "
            "time must fall in the seller's hours. At least 30 minutes ahead, at most 14 days.",
            body=obj(("token", "startAt"), token=_TOKEN, startAt=TIME),
        )
    },
    "/api/calls/{request_id}/reschedule/answer": {
        "post": _call_op(
            "Answer a request to move the call",
            description="By the party who did not ask: `accept` true moves the call (an updated invitation goes to "
            "both), false keeps the agreed time.",
            body=obj(("token", "accept"), token=_TOKEN, accept={"type": "boolean"}),
        )
    },
    "/api/calls/{request_id}/cancel": {
        "post": _call_op(
            "Cancel a booked call (buyer)",
            description="Until the start. At least CANCEL_NOTICE_SECONDS (24 h) before it: a full refund "
            "(`buyer_cancelled`). Later: counted as a no-show (`buyer_no_show`), the payment is kept.",
            body=obj(("token",), token=_TOKEN),
        )
    },
}

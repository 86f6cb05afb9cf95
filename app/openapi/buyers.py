"""What a buyer calls: the checkout, the status of a paid request, and the rating and report of
a call (authorised by the buyer's call credential)."""

from __future__ import annotations

from typing import Any

from app.openapi._build import (
    EMAIL,
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
    query_param,
)

TAG = ("Buyers", "Paying for a call and following it. No account needed.")

_STATUS = {"type": "string", "enum": ["processing", "pending", "accepted", "declined", "cancelled", "completed"]}
SCHEMAS: dict[str, Schema] = {
    "BuyerStatus": obj(
        ("status", "requestId", "sellerName", "expiresAt", "cancelReason", "joinUrl", "joinDeadline", "canCancel"),
        status=_STATUS,
        requestId=nullable(UUID),
        sellerName=STRING,
        expiresAt=OPTIONAL_TIME,
        cancelReason=nullable(STRING),
        proposedStarts=array(TIME),
        scheduledStart=OPTIONAL_TIME,
        joinUrl={
            "type": ["string", "null"],
            "description": "The buyer's call link, once accepted, and only for the browser that started the "
            "checkout (it holds that checkout's cookie). Everyone else gets null: the session id is no credential.",
        },
        joinDeadline={**OPTIONAL_TIME, "description": "Once accepted: join by then, or the call is cancelled."},
        canCancel={
            "type": "boolean",
            "description": "True while pending, for the browser that started the checkout: it may cancel.",
        },
        outcome={
            "type": ["string", "null"],
            "description": "Once the call is settled: what happened and what it means for the buyer's money.",
        },
        problemUrl={
            "type": ["string", "null"],
            "description": "The buyer's 'report a problem with this call' link, for 48 hours after the end, only for "
            "the browser that started the checkout (it carries the buyer's call credential).",
        },
    ),
}
_REQUEST_ID = path_param("request_id", UUID, "The call request.")


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], **kwargs)


PATHS: dict[str, dict[str, Any]] = {
    "/api/payments/checkout": {
        "post": _op(
            "Start a checkout",
            auth="public",
            changes=True,
            description="Opens a Checkout Session for the seller's call and sets a cookie (HttpOnly, SameSite=Lax) "
            "that lets this client see the buyer's join link on the status page. Send an `Idempotency-Key` header "
            "(16-64 printable characters) to get the same session back on a retry.",
            parameters=[
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 16, "maxLength": 64},
                }
            ],
            body=obj(
                ("slug", "buyerEmail"),
                slug={"type": "string", "maxLength": 40, "examples": ["demo"]},
                buyerEmail=EMAIL,
                note={"type": "string", "maxLength": 280},
                submissionKey={"type": "string", "minLength": 16, "maxLength": 64},
                proposedStarts={
                    **array(TIME),
                    "maxItems": 3,
                    "description": "Up to three start times (instants with their offset) within the seller's hours "
                    "and the card-hold window; omitted or empty: as soon as possible.",
                },
                timeZone={"type": "string", "maxLength": 64, "description": "The buyer's IANA time zone."},
            ),
            ok={201: obj(("checkoutUrl", "sessionId"), checkoutUrl=STRING, sessionId=STRING)},
            errors=(403, 404, 409),
        )
    },
    "/api/requests/status": {
        "get": _op(
            "The status of a paid request",
            auth="public",
            description="The state of the buyer's request. `processing` until the payment's webhook arrived. "
            "`GET /api/live/checkout` says when it changes.",
            parameters=[
                {
                    **query_param("session_id", {"type": "string", "maxLength": 255}, "The Checkout Session id."),
                    "required": True,
                }
            ],
            ok={200: {"$ref": "#/components/schemas/BuyerStatus"}},
            errors=(404,),
        )
    },
    "/api/requests/status/cancel": {
        "post": _op(
            "Cancel a pending request (buyer)",
            auth="public",
            changes=True,
            description="Only from the client that started the checkout (it holds that checkout's cookie): the "
            "request is cancelled before the seller answered and the hold is released at once.",
            body=obj(("sessionId",), sessionId={"type": "string", "minLength": 1, "maxLength": 255}),
            ok={200: obj(("cancelled",), cancelled={"type": "boolean"})},
            errors=(403, 404, 409),
        )
    },
    "/api/calls/{request_id}/rating": {
        "post": _op(
            "Rate a call (buyer)",
            auth="call",
            parameters=[_REQUEST_ID],
            description="`comment` (optional) is shown to the seller only, on their dashboard.",
            body=obj(
                ("token", "stars"),
                token=STRING,
                stars={"type": "integer", "minimum": 1, "maximum": 5},
                comment={"type": "string", "maxLength": 500},
            ),
            ok={
                201: obj(
                    ("rating",),
                    rating=obj(
                        ("stars", "comment", "createdAt"), stars={"type": "integer"}, comment=STRING, createdAt=TIME
                    ),
                )
            },
            errors=(409,),
        )
    },
    "/api/calls/{request_id}/report": {
        "post": _op(
            "Report a problem with a call (buyer)",
            auth="call",
            description="One report per party per call, within 48 hours of its end.",
            parameters=[_REQUEST_ID],
            body=obj(
                ("token", "reason"),
                token=STRING,
                reason={"type": "string", "enum": ["harassment", "inappropriate", "no_show", "spam", "other"]},
                text={"type": "string", "maxLength": 2000},
            ),
            ok={201: {"$ref": "#/components/schemas/ReportCreated"}},
            errors=(409,),
        )
    },
}

"""What a logged-in seller calls: requests, profile and photo, blocks, balance and payouts."""

from __future__ import annotations

from typing import Any

from app.openapi._build import (
    CENTS,
    CURRENCY,
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
    ref,
)

TAG = ("Sellers", "A seller's own requests, profile, blocks and money. Cookie session; CSRF token on changes.")

_REQUEST_STATUS = {"type": "string", "enum": ["PENDING", "ACCEPTED", "DECLINED", "CANCELLED", "COMPLETED"]}
_PAYOUT_STATUS = {"type": "string", "enum": ["requested", "processed", "rejected"]}
SCHEMAS: dict[str, Schema] = {
    "CallRequest": obj(
        ("id", "status", "buyerEmail", "note", "grossCents", "netCents", "currency", "createdAt", "expiresAt"),
        id=UUID,
        status=_REQUEST_STATUS,
        buyerEmail=EMAIL,
        note=STRING,
        grossCents=CENTS,
        netCents=CENTS,
        currency=CURRENCY,
        createdAt=TIME,
        expiresAt=TIME,
        acceptedAt=OPTIONAL_TIME,
        startedAt=OPTIONAL_TIME,
        endsAt=OPTIONAL_TIME,
        endedAt=OPTIONAL_TIME,
        cancelReason=nullable(STRING),
        joinUrl={"type": ["string", "null"], "description": "The seller's own call link, once accepted."},
        proposedStarts={**array(TIME), "description": "The buyer's proposed starts; empty: as soon as possible."},
        scheduledStart={**OPTIONAL_TIME, "description": "The start the seller accepted; null: right away."},
        joinOpensAt=OPTIONAL_TIME,
        buyerTimeZone=nullable(STRING),
        reschedule=nullable(obj(startAt=TIME, askedBy=STRING, answered={"type": "boolean"})),
    ),
    "Profile": obj(
        ("displayName", "slug", "bio", "priceCents", "currency", "paused", "status", "paywallUrl"),
        displayName=STRING,
        slug=STRING,
        bio=STRING,
        priceCents=CENTS,
        currency=CURRENCY,
        paused={"type": "boolean"},
        status={"type": "string", "description": "`live`, or why the paywall takes no bookings."},
        paywallUrl=STRING,
        photoUrl=nullable(STRING),
        thumbnailUrl=nullable(STRING),
        updatedAt=OPTIONAL_TIME,
    ),
    "Block": obj(("id", "buyerEmail", "createdAt"), id=UUID, buyerEmail=EMAIL, createdAt=TIME),
    "BlockAnswer": obj(("block", "cancelledRequestIds"), block=ref("Block"), cancelledRequestIds=array(UUID)),
    "Payout": obj(
        ("id", "status", "amountCents", "currency", "createdAt"),
        id=UUID,
        status=_PAYOUT_STATUS,
        amountCents=CENTS,
        currency=CURRENCY,
        reference=nullable(STRING),
        rejectReason=nullable(STRING),
        createdAt=TIME,
        processedAt=OPTIONAL_TIME,
    ),
    "PayoutAccount": obj(
        ("mode", "payoutsEnabled", "requirementsDue", "schedule"),
        mode={"type": "string", "enum": ["connect", "manual", "none"]},
        payoutsEnabled={"type": "boolean"},
        requirementsDue=array(STRING),
        schedule={"type": "string", "enum": ["manual", "weekly"]},
        connect=nullable(
            obj(
                accountId=STRING,
                country=nullable(STRING),
                detailsSubmitted={"type": "boolean"},
                payoutsEnabled={"type": "boolean"},
            )
        ),
        method=nullable(
            obj(kind={"type": "string", "enum": ["iban", "paypal"]}, holder=nullable(STRING), last4=STRING)
        ),
        connectAvailable={"type": "boolean"},
    ),
    "ReportCreated": obj(
        ("report",),
        report=obj(("id", "status", "reason", "createdAt"), id=UUID, status=STRING, reason=STRING, createdAt=TIME),
    ),
}
_REQUEST_ID = path_param("request_id", UUID, "The call request.")


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], **kwargs)


_DECISION_BODY = obj(
    (),
    startAt={**TIME, "description": "Accept only: one of the request's proposedStarts."},
    message={"type": "string", "maxLength": 500, "description": "Decline only: for the buyer's email."},
)

PATHS: dict[str, dict[str, Any]] = {
    "/api/requests": {
        "get": _op(
            "List your call requests",
            parameters=[
                query_param(
                    "status",
                    {"type": "string", "enum": ["all", "pending", "accepted", "declined", "cancelled", "completed"]},
                    "Only requests in this state (case-insensitive).",
                )
            ],
            ok={200: obj(("requests",), requests=array(ref("CallRequest")))},
        )
    },
    "/api/requests/{request_id}/{action}": {
        "post": _op(
            "Accept or decline a request",
            changes=True,
            description="Accept captures the buyer's payment and opens the room; decline releases the hold. An "
            "accept may send `startAt`, one of the request's `proposedStarts`: the call is then booked for that "
            "time (both parties get a calendar invitation), otherwise it is for right now. A decline may carry a "
            "`message` for the buyer: it goes into the email that tells them.",
            parameters=[_REQUEST_ID, path_param("action", {"type": "string", "enum": ["accept", "decline"]})],
            ok={200: obj(("request",), request=ref("CallRequest"))},
            errors=(409,),
        )
        # The body is optional: without one, the accept is for right now (as before scheduling).
        | {"requestBody": {"required": False, "content": {"application/json": {"schema": _DECISION_BODY}}}}
    },
    "/api/requests/{request_id}/block": {
        "post": _op(
            "Block the buyer of a request",
            changes=True,
            description="Their waiting requests are cancelled and released.",
            parameters=[_REQUEST_ID],
            ok={200: ref("BlockAnswer"), 201: ref("BlockAnswer")},
        )
    },
    "/api/requests/{request_id}/report": {
        "post": _op(
            "Report a problem with a call (seller)",
            changes=True,
            parameters=[_REQUEST_ID],
            body=obj(
                ("reason",),
                reason={"type": "string", "enum": ["harassment", "inappropriate", "no_show", "spam", "other"]},
                text={"type": "string", "maxLength": 2000},
            ),
            ok={201: ref("ReportCreated")},
            errors=(409,),
        )
    },
    "/api/profile": {
        "get": _op("Your profile", ok={200: ref("Profile")}, errors=(404,)),
        "post": _op(
            "Create or update your profile",
            changes=True,
            description="Send only the fields to change. 201 when it creates the profile.",
            body=obj(
                displayName={"type": "string", "maxLength": 60},
                slug={"type": "string", "pattern": "^[a-z0-9-]{3,40}$"},
                bio={"type": "string", "maxLength": 1000},
                priceCents={"type": "integer", "minimum": 100, "maximum": 100000},
                paused={"type": "boolean"},
            ),
            ok={200: ref("Profile"), 201: ref("Profile")},
            errors=(409,),
        ),
    },
    "/api/profile/photo": {
        "post": _op(
            "Upload your photo",
            changes=True,
            description="JPEG, PNG or WebP up to 5 MB, at most 8 megapixels once decoded (a larger JPEG is decoded "
            "at reduced scale). Rate limited per seller and per address.",
            body=obj(("photo",), photo={"type": "string", "contentMediaType": "application/octet-stream"}),
            body_type="multipart/form-data",
            ok={200: ref("Profile")},
            errors=(409, 413),
        ),
        "delete": _op("Remove your photo", changes=True, ok={200: ref("Profile")}, errors=(404,)),
    },
    "/api/blocks": {
        "get": _op("List the buyers you blocked", ok={200: obj(("blocks",), blocks=array(ref("Block")))}),
        "post": _op(
            "Block a buyer's email",
            changes=True,
            body=obj(("email",), email=EMAIL),
            ok={200: ref("BlockAnswer"), 201: ref("BlockAnswer")},
        ),
    },
    "/api/blocks/{block_id}": {
        "delete": _op("Unblock", changes=True, parameters=[path_param("block_id", UUID)], ok={204: None})
    },
    "/api/balance": {
        "get": _op(
            "Your balance",
            ok={
                200: obj(
                    ("availableCents", "pendingCents", "currency"),
                    availableCents=CENTS,
                    pendingCents=CENTS,
                    currency=CURRENCY,
                )
            },
        )
    },
    "/api/payouts": {"get": _op("Your payouts", ok={200: obj(("payouts",), payouts=array(ref("Payout")))})},
    "/api/payouts/onboarding": {
        "post": _op(
            "Start or resume Stripe Connect onboarding",
            changes=True,
            description="Answers a single-use link to Stripe's onboarding (the built-in page without Stripe keys).",
            body=obj(country={"type": "string", "minLength": 2, "maxLength": 2}),
            ok={200: obj(("url",), url=STRING)},
            errors=(409,),
        )
    },
    "/api/payouts/account": {"get": _op("Your payout set-up", ok={200: ref("PayoutAccount")})},
    "/api/payouts/method": {
        "post": _op(
            "Set the manual payout method",
            changes=True,
            description="A bank account (`kind: iban` with `holder` and `iban`) or PayPal (`kind: paypal`, `email`).",
            body=obj(
                ("kind",),
                kind={"type": "string", "enum": ["iban", "paypal"]},
                holder={"type": "string", "maxLength": 100},
                iban={"type": "string", "maxLength": 42},
                email=EMAIL,
            ),
            ok={200: ref("PayoutAccount")},
        )
    },
    "/api/payouts/schedule": {
        "post": _op(
            "Choose the payout schedule",
            changes=True,
            body=obj(("schedule",), schedule={"type": "string", "enum": ["manual", "weekly"]}),
            ok={200: ref("PayoutAccount")},
            errors=(409,),
        )
    },
    "/api/payouts/dashboard": {
        "post": _op(
            "Open your Stripe Express dashboard",
            changes=True,
            ok={200: obj(("url",), url=STRING)},
            errors=(409,),
        )
    },
    "/api/payouts/request": {
        "post": _op(
            "Ask for a payout",
            changes=True,
            body=obj(("amountCents",), amountCents={"type": "integer", "minimum": 1}),
            ok={201: obj(("payout",), payout=ref("Payout"))},
            errors=(409,),
        )
    },
}

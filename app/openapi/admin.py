"""``/api/admin/``: the admin's queues and actions. Admins only."""

from __future__ import annotations

from typing import Any

from app.openapi._build import (
    CENTS,
    EMAIL,
    OPTIONAL_TIME,
    STRING,
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

TAG = ("Admin", "Reports, problems with calls, payouts, sellers and erasure. Admins only.")

SCHEMAS: dict[str, Schema] = {
    "Report": obj(
        ("id", "status", "reporterRole", "reason", "sellerId"),
        id=UUID,
        status={"type": "string"},
        reporterRole={"type": "string", "enum": ["BUYER", "SELLER"]},
        reason=STRING,
        requestId=nullable(UUID),
        sellerId=UUID,
        createdAt=OPTIONAL_TIME,
        resolvedAt=OPTIONAL_TIME,
        resolutionNote=nullable(STRING),
    ),
    "ProblemCase": obj(
        ("id", "requestId", "party", "reason", "status", "facts", "refundableCents"),
        id=UUID,
        requestId=UUID,
        party={"type": "string", "enum": ["buyer", "seller"]},
        reason={"type": "string", "enum": ["no_connection", "ended_early", "poor_quality", "no_show", "other"]},
        details=STRING,
        status={"type": "string", "enum": ["open", "refunded", "closed"]},
        facts={
            "type": "object",
            "description": "The call as the server measured it when the case opened: each party's connected "
            "intervals, when each joined, the clock, who ended it, the settlement's amounts and the payment.",
        },
        refundableCents=CENTS,
        refundCents=CENTS,
        reversalCents={"type": "integer", "description": "Taken back from the seller's balance, in cents."},
        resolutionNote=nullable(STRING),
        createdAt=OPTIONAL_TIME,
        resolvedAt=OPTIONAL_TIME,
    ),
}
_CASE = path_param("case_id", UUID, "The problem report.")


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], auth="admin", **kwargs)


PATHS: dict[str, dict[str, Any]] = {
    "/api/admin/problems": {
        "get": _op(
            "Problems reported with calls",
            description="Open cases oldest first; the others newest first.",
            parameters=[query_param("status", {"type": "string", "enum": ["open", "refunded", "closed"]})],
            ok={200: obj(("problems",), problems=array(ref("ProblemCase")))},
        )
    },
    "/api/admin/problems/{case_id}/refund": {
        "post": _op(
            "Refund a problem case",
            changes=True,
            description="Refunds the buyer all or part of what they still have paid for the call; the seller's share "
            "is reversed in their balance (one reversal per case), the gateway refunds in a worker, both parties are "
            "emailed. A case is decided once: a second decision is 409.",
            parameters=[_CASE],
            body=obj(("amountCents",), amountCents=CENTS, note={"type": "string", "maxLength": 1000}),
            ok={200: obj(("problem",), problem=ref("ProblemCase"))},
            errors=(404, 409),
        )
    },
    "/api/admin/problems/{case_id}/close": {
        "post": _op(
            "Close a problem case without a refund",
            changes=True,
            description="With a note both parties read in their email.",
            parameters=[_CASE],
            body=obj(("note",), note={"type": "string", "maxLength": 1000}),
            ok={200: obj(("problem",), problem=ref("ProblemCase"))},
            errors=(404, 409),
        )
    },
    "/api/admin/reports": {
        "get": _op(
            "Problem reports",
            parameters=[query_param("status", {"type": "string", "enum": ["open", "resolved", "all"]})],
            ok={200: obj(("reports",), reports=array(ref("Report")))},
        )
    },
    "/api/admin/reports/{report_id}/resolve": {
        "post": _op(
            "Resolve a report",
            changes=True,
            parameters=[path_param("report_id", UUID)],
            body=obj(("note",), note={"type": "string", "maxLength": 2000}),
            ok={200: obj(("report",), report=ref("Report"))},
            errors=(409,),
        )
    },
    "/api/admin/payouts": {
        "get": _op(
            "The payout queue",
            parameters=[
                query_param("status", {"type": "string", "enum": ["requested", "processed", "rejected", "all"]})
            ],
            ok={
                200: obj(
                    ("payouts",),
                    payouts=array({"allOf": [ref("Payout"), obj(sellerId=UUID, sellerEmail=EMAIL)]}),
                )
            },
        )
    },
    "/api/admin/payouts/{payout_id}/process": {
        "post": _op(
            "Process or reject a payout",
            changes=True,
            parameters=[path_param("payout_id", UUID)],
            body=obj(
                action={"type": "string", "enum": ["process", "reject"], "default": "process"},
                reference={"type": "string", "description": "With process: the transfer's reference."},
                reason={"type": "string", "description": "With reject: told to the seller."},
            ),
            ok={200: obj(("payout",), payout=ref("Payout"))},
            errors=(409,),
        )
    },
    "/api/admin/transfers": {
        "get": _op(
            "Stripe transfers of payouts",
            parameters=[
                query_param("state", {"type": "string", "enum": ["all", "failed", "sending", "sent", "reversed"]})
            ],
            ok={
                200: obj(
                    ("transfers",),
                    transfers=array(
                        obj(
                            ("payoutId", "sellerId", "state", "amountCents", "currency"),
                            payoutId=UUID,
                            sellerId=UUID,
                            sellerEmail=EMAIL,
                            state=STRING,
                            amountCents={"type": "integer"},
                            amountReversedCents={"type": "integer"},
                            currency=STRING,
                            destination=nullable(STRING),
                            stripeTransferId=nullable(STRING),
                            transferGroup=nullable(STRING),
                            attempts={"type": "integer"},
                            error=nullable(STRING),
                            retriedByPayoutId=nullable(UUID),
                        )
                    ),
                )
            },
        )
    },
    "/api/admin/transfers/{payout_id}/retry": {
        "post": _op(
            "Retry a failed transfer as a new payout",
            changes=True,
            parameters=[path_param("payout_id", UUID)],
            ok={201: obj(("payout",), payout=ref("Payout"))},
            errors=(409,),
        )
    },
    "/api/admin/payout-accounts": {
        "get": _op(
            "Every seller's payout set-up",
            ok={
                200: obj(
                    ("sellers",),
                    sellers=array({"allOf": [obj(("sellerId",), sellerId=UUID, email=EMAIL), ref("PayoutAccount")]}),
                )
            },
        )
    },
    "/api/admin/sellers/{seller_id}/{action}": {
        "post": _op(
            "Suspend or reinstate a seller",
            changes=True,
            parameters=[
                path_param("seller_id", UUID),
                path_param("action", {"type": "string", "enum": ["suspend", "unsuspend"]}),
            ],
            body=obj(note={"type": "string", "maxLength": 2000}),
            ok={200: obj(("seller",), seller=obj(("id", "suspended"), id=UUID, suspended={"type": "boolean"}))},
            errors=(409,),
        )
    },
    "/api/admin/erase": {
        "post": _op(
            "Erase a buyer's email everywhere",
            changes=True,
            body=obj(("email",), email=EMAIL),
            ok={200: obj(("erasure",), erasure=obj(("tombstone", "rows"), tombstone=STRING, rows={"type": "integer"}))},
            errors=(409,),
        )
    },
}

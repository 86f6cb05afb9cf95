"""``/api/video/``: what a call page sends while the call happens. Each request carries the
party's call credential in its body; no session and no CSRF token."""

from __future__ import annotations

from typing import Any

from app.openapi._build import OPTIONAL_TIME, STRING, UUID, Schema, array, obj, operation, path_param

TAG = (
    "Calls",
    "The call page's own API: join, presence, end, the built-in room's signalling, and the parties' problem reports.",
)

_CLIENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$", "description": "Names one browser window."}
_PARTY = {
    "requestId": UUID,
    "token": {"type": "string", "maxLength": 128, "description": "The `t` of the call link."},
    "clientId": _CLIENT_ID,
}
SCHEMAS: dict[str, Schema] = {
    "CallState": obj(
        ("status",),
        status={"type": "string"},
        cancelReason={"type": ["string", "null"]},
        startedAt=OPTIONAL_TIME,
        endsAt=OPTIONAL_TIME,
        joinDeadline=OPTIONAL_TIME,
        buyerPresent={"type": "boolean"},
        sellerPresent={"type": "boolean"},
        serverTime=OPTIONAL_TIME,
        endedBy={"type": ["string", "null"], "enum": ["timer", "sweep", "seller", "buyer", "admin", None]},
        outcome={
            "type": "string",
            "description": "Once the call is over and settled: what happened and what it means for this party's "
            "money, in plain words (for example `The seller ended the call after 2 min 10 s: you will be refunded "
            "$5.67 for the unused time, and pay $4.33.`).",
        },
        problemReportOpen={
            "type": "boolean",
            "description": "Whether this party may still report a problem with the call (48 hours after its end).",
        },
    ),
    "ProblemCreated": obj(("caseId",), caseId=UUID),
}
_STATE = {"$ref": "#/components/schemas/CallState"}


def _body(*required: str, **extra: Schema) -> Schema:
    return obj(("requestId", "token", *required), **_PARTY, **extra)


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], auth="call", errors=(409,), **kwargs)


PATHS: dict[str, dict[str, Any]] = {
    "/api/video/create": {
        "post": _op(
            "Make sure the room exists",
            body=_body(),
            ok={200: {"allOf": [_STATE, obj(provider=STRING, roomUrl={"type": ["string", "null"]})]}},
        )
    },
    "/api/video/join": {
        "post": _op(
            "Join the call",
            description="One window per party: another window of the same link gets 409 `in_use`.",
            body=_body("clientId"),
            ok={
                200: {
                    "allOf": [
                        _STATE,
                        obj(
                            ("provider", "durationSeconds"),
                            provider=STRING,
                            roomUrl={"type": ["string", "null"]},
                            token=STRING,
                            durationSeconds={"type": "integer"},
                            party={"type": "string", "enum": ["buyer", "seller"]},
                        ),
                    ]
                }
            },
        )
    },
    "/api/video/presence": {
        "post": _op(
            "Report presence",
            description="`joined`: in the room, media not flowing. `connected`: media flows both ways (the built-in "
            "room's page sends it only while its peer connection is connected and the other party's video plays), "
            "at least every 5 s. `left`: gone. The clock starts when both parties are `connected`; for a Daily room "
            "the pages' word is a hint and Daily's webhooks (or its presence) decide.",
            body=_body("clientId", "state", state={"type": "string", "enum": ["joined", "connected", "left"]}),
            ok={200: _STATE},
        )
    },
    "/api/video/end": {
        "post": _op(
            "End the call",
            description="Either party may end the call early: the seller then refunds the unused share (pro rata by "
            "connected seconds, all of it under the minimum), the buyer still pays in full. Ending an ended call "
            "answers its state.",
            body=_body(),
            ok={200: _STATE},
        )
    },
    "/api/calls/{request_id}/problem": {
        "post": operation(
            "Report a problem with this call",
            tag=TAG[0],
            auth="call",
            description="Either party, once per party per call, within 48 hours of its end: opens a case in the "
            "admin's disputes queue with the call's measured facts. The seller may send their session (and the "
            "CSRF token) instead of `token`.",
            parameters=[path_param("request_id", UUID, "The call request.")],
            body=obj(
                ("reason",),
                token={"type": "string", "maxLength": 128, "description": "The party's call credential."},
                reason={
                    "type": "string",
                    "enum": ["no_connection", "ended_early", "poor_quality", "no_show", "other"],
                },
                details={"type": "string", "maxLength": 1000},
            ),
            ok={201: {"$ref": "#/components/schemas/ProblemCreated"}},
            errors=(401, 404, 409),
        )
    },
    "/api/video/signal": {
        "post": _op(
            "Send a signalling message (built-in room)",
            body=_body(
                message=obj(
                    ("type",), type={"type": "string", "enum": ["hello", "offer", "answer", "candidate", "bye"]}
                )
            ),
            ok={202: obj(("id",), id=STRING)},
        )
    },
    "/api/video/signal/poll": {
        "post": _op(
            "Poll for signalling messages (built-in room)",
            body=_body("clientId", after={"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"}),
            ok={
                200: {
                    "allOf": [
                        _STATE,
                        obj(("messages",), messages=array({"type": "object"}), cursor={"type": ["string", "null"]}),
                    ]
                }
            },
        )
    },
}

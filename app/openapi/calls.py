"""``/api/video/``: what a call page sends while the call happens. Each request carries the
party's call credential in its body; no session and no CSRF token."""

from __future__ import annotations

from typing import Any

from app.openapi._build import OPTIONAL_TIME, STRING, UUID, Schema, array, obj, operation

TAG = ("Calls", "The call page's own API: join, presence, end, and the built-in room's signalling.")

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
    ),
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
            body=_body("clientId", "state", state={"type": "string", "enum": ["joined", "left"]}),
            ok={200: _STATE},
        )
    },
    "/api/video/end": {"post": _op("End the call", body=_body(), ok={200: _STATE})},
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

"""Live pages: the long-polls that tell an open page something changed (``app/live.py``)."""

from __future__ import annotations

from typing import Any

from app.openapi._build import Schema, obj, operation, query_param

TAG = (
    "Live",
    "Long-polls that answer as soon as a call request changes (accepted, declined, paid, started, ended, "
    "cancelled), or after about 20 seconds with `changed: false`. Ask again with the `version` received.",
)

SCHEMAS: dict[str, Schema] = {
    "LiveAnswer": obj(
        ("version", "changed"),
        version={"type": "integer", "minimum": 0, "description": "Send it back as `since` next time."},
        changed={"type": "boolean", "description": "Something changed since `since`: fetch the state again."},
        retryAfter={
            "type": "integer",
            "description": "The server is at its bound of waiting requests: ask again after this many seconds.",
        },
    ),
}
_SINCE = query_param(
    "since",
    {"type": "string", "pattern": "^[0-9]{1,18}$", "default": "0"},
    "The version the client last saw (the page's `data-live-version`, or the last answer's `version`).",
)
_ANSWER = {200: {"$ref": "#/components/schemas/LiveAnswer"}}


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], **kwargs)


PATHS: dict[str, dict[str, Any]] = {
    "/api/live/seller": {
        "get": _op(
            "Wait for a change to the seller's requests",
            description="Answers when any of the signed-in seller's requests changes.",
            parameters=[_SINCE],
            ok=_ANSWER,
        )
    },
    "/api/live/checkout": {
        "get": _op(
            "Wait for a change to a paid request (buyer)",
            auth="public",
            description="Answers when the request paid with this Checkout Session changes (or is created).",
            parameters=[
                {
                    **query_param("session_id", {"type": "string", "minLength": 1, "maxLength": 255}, "The id."),
                    "required": True,
                },
                _SINCE,
            ],
            ok=_ANSWER,
        )
    },
}

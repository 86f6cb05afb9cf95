"""Operations: health, the Stripe webhook, and this document itself."""

from __future__ import annotations

from typing import Any

from app.openapi._build import STRING, obj, operation

TAG = ("Operations", "Health, webhooks and the API reference.")

_HEALTH = obj(
    ("status", "db", "redis", "worker"),
    status={"type": "string", "enum": ["ok", "unavailable"]},
    db=STRING,
    redis=STRING,
    worker={"type": "string", "description": "`ok`, or `stale` when no sweep has run for a while."},
    workerHeartbeatAgeSeconds={"type": ["number", "null"]},
)


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], **kwargs)


def _html(spec: dict[str, Any]) -> dict[str, Any]:
    page = {"description": "An HTML page.", "content": {"text/html": {"schema": STRING}}}
    return {**spec, "responses": {**spec["responses"], "200": page}}


PATHS: dict[str, dict[str, Any]] = {
    "/api/health": {
        "get": _op(
            "Health",
            auth="public",
            description="503 (with the same body) names the part that is down.",
            ok={200: _HEALTH},
        )
    },
    "/api/webhooks/stripe": {
        "post": _op(
            "Stripe webhook",
            auth="signature",
            description="Verified on the raw body (signatures dated more than 300 s before or after now are "
            "refused), stored, answered at once; the work happens in a worker. Also at `/webhooks/stripe`.",
            body={"type": "object", "description": "A Stripe event."},
            ok={200: obj(("received",), received={"type": "boolean"})},
        )
    },
    "/api/webhooks/daily": {
        "post": _op(
            "Daily webhook",
            auth="signature",
            description="`participant.joined`, `participant.left` and `meeting.ended`, signed by Daily: "
            "`X-Webhook-Signature` is base64(HMAC-SHA256(base64-decoded secret, `<X-Webhook-Timestamp>.<raw body>`)); "
            "a timestamp more than 300 s away from now is refused. Stored (a redelivery is stored once), answered "
            "at once, processed in a worker. 404 where `DAILY_WEBHOOK_SECRET` is not configured; Daily's check of a "
            'new webhook (`{"test": ...}`) gets a 200.',
            body={"type": "object", "description": "A Daily event: `{version, type, id, payload, event_ts}`."},
            ok={200: obj(("received",), received={"type": "boolean"})},
            errors=(404,),
        )
    },
    "/api/openapi.json": {
        "get": _op("This document", auth="public", ok={200: {"type": "object"}}),
    },
    "/api/docs": {"get": _html(_op("This document, to read", auth="public"))},
}

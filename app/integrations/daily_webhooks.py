"""Daily's webhook signature, as Daily signs it.

Daily returns a base64 ``hmac`` secret when a webhook is created (or takes one given in base64).
Each delivery carries ``X-Webhook-Timestamp`` and ``X-Webhook-Signature``; the signature is
base64(HMAC-SHA256(key = base64-decode(secret), message = "<timestamp>.<raw body>")). It is
checked on the raw bytes, before anything is parsed, in constant time, and a delivery whose
timestamp is more than ``TOLERANCE_SECONDS`` away from our clock is refused (a replay). Daily's
documentation does not say whether the timestamp is in seconds or milliseconds: both are read.

``sign`` is what the tests' fake Daily uses to sign like Daily.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"


class InvalidSignature(Exception):
    """The delivery is not Daily's: missing, malformed, stale, or signed with another secret."""


def sign(body: bytes, secret: str, timestamp: str) -> str:
    """The ``X-Webhook-Signature`` Daily would send for ``body`` at ``timestamp``."""
    key = base64.b64decode(secret)
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(body: bytes, signature: str | None, timestamp: str | None, secret: str, *, now: float) -> None:
    """Raise ``InvalidSignature`` unless Daily signed exactly these bytes, recently."""
    if not signature or not timestamp:
        raise InvalidSignature("missing signature headers")
    try:
        sent = float(timestamp)
    except ValueError:
        raise InvalidSignature("malformed timestamp") from None
    if sent > 1e12:  # milliseconds
        sent /= 1000
    if abs(now - sent) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance")
    try:
        expected = sign(body, secret, timestamp)
    except (binascii.Error, ValueError):
        raise InvalidSignature("the configured secret is not base64") from None
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise InvalidSignature("signature mismatch")

"""The product's flows, driven over HTTP against a drill's stack the way its users drive them:
a buyer opens a checkout through the API and pays, Stripe (here: the built-in checkout's state,
or the fake Stripe) announces it with a signed webhook, the seller accepts through the API and
both parties join the call."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from app.db import utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.models import Profile, Role, User
from app.services.accounts import hash_password
from tests.e2e.drills.conftest import Drill, wait_for

PRICE_CENTS = 2500
PASSWORD = "drill-password-7f3a9c"
_client_addresses = itertools.count(1)


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header by Stripe's scheme: hex HMAC-SHA256 of ``"<t>." + body``
    keyed with the endpoint secret (written out here, not borrowed from the product)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def post_event(drill: Drill, event: dict[str, Any], *, timeout: float = 10) -> requests.Response:
    """Deliver one event as Stripe does: pretty-printed JSON, signed at the time of sending."""
    payload = json.dumps(event, indent=2).encode()
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": sign(payload, drill.env["STRIPE_WEBHOOK_SECRET"]),
    }
    return requests.post(f"{drill.url}/api/webhooks/stripe", data=payload, headers=headers, timeout=timeout)


def completed_event(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_drill_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": session},
    }


@dataclass(frozen=True)
class Seller:
    id: uuid.UUID
    email: str
    slug: str


def seed_seller(drill: Drill, tag: str = "seller") -> Seller:
    """A verified seller with a live paywall, written straight to the drill's database."""
    seller = Seller(uuid.uuid4(), f"{tag}@drill.example.com", f"drill-{tag}")
    engine = create_engine(drill.database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            User.__table__.insert(),
            {
                "id": seller.id,
                "email": seller.email,
                "password_hash": hash_password(PASSWORD, rounds=4),
                "role": Role.SELLER.value,
                "email_verified_at": utcnow(),
            },
        )
        conn.execute(
            Profile.__table__.insert(),
            {
                "id": uuid.uuid4(),
                "user_id": seller.id,
                "slug": seller.slug,
                "display_name": f"Drill {tag.title()}",
                "price_cents": PRICE_CENTS,
                "currency": "usd",
            },
        )
    engine.dispose()
    return seller


def browser(drill: Drill) -> requests.Session:
    """A cookie session holding a CSRF token for the JSON API, from its own client address
    (the stacks trust one proxy hop, as behind a load balancer, so rate limits see each buyer)."""
    http = requests.Session()
    http.headers["X-Forwarded-For"] = f"10.{next(_client_addresses) % 250}.{uuid.uuid4().int % 250}.7"
    token = http.get(f"{drill.url}/api/auth/csrf", timeout=10).json()["csrfToken"]
    http.headers["X-CSRFToken"] = token
    return http


def log_in(drill: Drill, seller: Seller) -> requests.Session:
    http = browser(drill)
    response = http.post(f"{drill.url}/api/auth/login", json={"email": seller.email, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    # Logging in rotates the session; the CSRF token belongs to the new one.
    http.headers["X-CSRFToken"] = http.get(f"{drill.url}/api/auth/csrf", timeout=10).json()["csrfToken"]
    return http


def start_checkout(drill: Drill, seller: Seller, buyer_email: str, *, note: str = "drill") -> str:
    """``POST /api/payments/checkout`` as a buyer would; returns the Checkout Session id."""
    response = browser(drill).post(
        f"{drill.url}/api/payments/checkout",
        json={"slug": seller.slug, "buyerEmail": buyer_email, "note": note},
        timeout=15,
    )
    assert response.status_code == 201, response.text
    return response.json()["sessionId"]


def pay_builtin(drill: Drill, session_id: str) -> dict[str, Any]:
    """The buyer pays on the built-in checkout (a hold); returns the ``checkout.session.completed``
    event it would deliver, so the drill can deliver it itself, when it chooses."""
    events: list[dict[str, Any]] = []
    gateway = builtin_gateway(drill.settings, drill.redis_client(), notify=events.append)
    gateway.pay(session_id)
    (event,) = [e for e in events if e["type"] == "checkout.session.completed"]
    return event


def paid_checkouts(drill: Drill, seller: Seller, count: int, *, tag: str) -> list[dict[str, Any]]:
    """``count`` buyers open a checkout through the API and pay; their webhook events, undelivered."""
    return [pay_builtin(drill, start_checkout(drill, seller, f"{tag}{n}@buyers.example.org")) for n in range(count)]


def request_for_session(drill: Drill, session_id: str) -> uuid.UUID | None:
    return drill.scalar(
        "SELECT r.id FROM call_requests r JOIN transactions t ON t.id = r.transaction_id"
        " WHERE t.stripe_checkout_session_id = :sid",
        sid=session_id,
    )


def wait_request(drill: Drill, session_id: str, *, timeout: float = 30) -> uuid.UUID:
    return wait_for(
        lambda: request_for_session(drill, session_id), timeout=timeout, what=f"the request of {session_id}"
    )


def accept(drill: Drill, seller_http: requests.Session, request_id: uuid.UUID) -> dict[str, Any]:
    response = seller_http.post(f"{drill.url}/api/requests/{request_id}/accept", timeout=15)
    assert response.status_code == 200, response.text
    return response.json()["request"]


def token_of(join_url: str) -> str:
    return parse_qs(urlsplit(join_url).query)["t"][0]


def buyer_join_url(drill: Drill, request_id: uuid.UUID, *, timeout: float = 30) -> str:
    """The link the buyer got by email once the room was ready."""
    return wait_for(
        lambda: drill.scalar(
            "SELECT context->>'join_url' FROM email_outbox WHERE dedupe_key = :key",
            key=f"call_ready:buyer:{request_id}",
        ),
        timeout=timeout,
        what=f"the buyer's call_ready email of {request_id}",
    )


def enter_call(drill: Drill, request_id: uuid.UUID, join_url: str) -> dict[str, Any]:
    """What a party's call page does on Join and once its media flows: ``join``, then ``presence:
    connected`` (the drills' calls use the built-in room, where the pages' word starts the clock)."""
    body = {"requestId": str(request_id), "token": token_of(join_url), "clientId": f"drill-{uuid.uuid4().hex[:12]}"}
    joined = requests.post(f"{drill.url}/api/video/join", json=body, timeout=15)
    assert joined.status_code == 200, joined.text
    present = requests.post(f"{drill.url}/api/video/presence", json={**body, "state": "connected"}, timeout=15)
    assert present.status_code == 200, present.text
    return present.json()

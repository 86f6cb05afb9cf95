"""Every time the JSON API answers is ISO 8601 in UTC ending in ``Z``.

The GET endpoints are read from ``app.url_map`` (so a new one is walked without a change here),
called as a seller and as an admin over a platform with requests in every state, payouts,
reports, ratings and blocks; the endpoints that answer times after an action are called too.
Every string in every answer that looks like a date and time must be spelled the one way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.db import utcnow
from app.models import CancelReason, LedgerKind, RequestStatus, User
from app.services import ledger
from app.services.calls import join_token
from tests.call_helpers import SECRET_KEY, accepted_call
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, CallRequestFactory, TransactionFactory

LOOKS_LIKE_A_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
ONE_SPELLING = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def times_in(value: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """Every (JSON path, string) in ``value`` that looks like a date and time."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from times_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from times_in(item, f"{path}[{index}]")
    elif isinstance(value, str) and LOOKS_LIKE_A_TIME.match(value):
        yield path, value


def get_routes(app: Flask) -> list[str]:
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and "GET" in (rule.methods or ()) and not rule.arguments
    )


def collect(client: FlaskClient, routes: list[str], seen: dict[str, str]) -> None:
    for route in routes:
        response = client.get(route)
        if response.is_json:
            seen.update(times_in(response.get_json(), route))


def test_the_scan_recognises_both_spellings() -> None:
    found = dict(times_in({"a": ["2026-12-07T20:30:00+00:00", "x"], "b": {"c": "2026-12-07T20:30:00Z"}}))
    assert found == {"$.a[0]": "2026-12-07T20:30:00+00:00", "$.b.c": "2026-12-07T20:30:00Z"}
    assert not ONE_SPELLING.match(found["$.a[0]"]) and ONE_SPELLING.match(found["$.b.c"])


def test_every_time_on_the_wire_is_utc_with_a_z(app, client, db_session) -> None:  # type: ignore[no-untyped-def]
    call = accepted_call(seller_name="Ada")
    seller_id = call.seller_id
    now = utcnow()
    for status, extra in (
        (RequestStatus.PENDING, {}),
        (RequestStatus.DECLINED, {"declined_at": now}),
        (RequestStatus.CANCELLED, {"cancel_reason": CancelReason.EXPIRED, "cancelled_at": now}),
        (
            RequestStatus.COMPLETED,
            {"accepted_at": now, "started_at": now - timedelta(minutes=6), "ends_at": now - timedelta(minutes=1)},
        ),
    ):
        CallRequestFactory(transaction=TransactionFactory(seller_id=seller_id), status=status, **extra)
    completed = CallRequestFactory(
        transaction=TransactionFactory(seller_id=seller_id),
        status=RequestStatus.COMPLETED,
        started_at=now - timedelta(minutes=6),
        ends_at=now - timedelta(minutes=1),
        ended_at=now - timedelta(minutes=1),
        join_key="k" * 43,
    )
    ledger.record_call_entry(db_session, completed, LedgerKind.EARNING, 5000, memo="Call completed", now=now)
    db_session.flush()

    seen: dict[str, str] = {}
    login(client, db_session.get(User, seller_id))
    headers = {"X-CSRFToken": csrf_token(client)}
    assert client.post("/api/payouts/request", json={"amountCents": 1000}, headers=headers).status_code == 201
    assert client.post("/api/blocks", json={"email": "rude@example.org"}, headers=headers).status_code == 201
    seen.update(
        times_in(
            client.post(
                f"/api/requests/{completed.id}/report", json={"reason": "harassment", "text": "x"}, headers=headers
            ).get_json(),
            "seller report",
        )
    )
    collect(client, get_routes(app), seen)

    buyer = {"requestId": str(completed.id), "token": join_token(SECRET_KEY, completed, "buyer")}
    rated = client.post(f"/api/calls/{completed.id}/rating", json={"token": buyer["token"], "stars": 5})
    seen.update(times_in(rated.get_json(), "rating"))
    live = {"requestId": str(call.id), "token": join_token(SECRET_KEY, call, "buyer"), "clientId": "buyer-window-1"}
    seen.update(times_in(client.post("/api/video/join", json=live).get_json(), "video join"))

    admin = app.test_client()
    login(admin, AdminFactory())
    collect(admin, get_routes(app), seen)

    wrong = {path: value for path, value in seen.items() if not ONE_SPELLING.match(value)}
    assert wrong == {}
    # The walk met the times it is meant to check (it cannot pass on empty answers).
    walked = " ".join(seen)
    for expected in ("/api/requests", "/api/payouts", "/api/blocks", "/api/admin/reports", "rating", "video join"):
        assert expected in walked, f"no time seen from {expected}"

"""Issue 16, finding 6: no input makes a 500. NUL bytes, lone surrogates and 20,000-deep JSON are
refused in the error shape before they reach PostgreSQL or the JSON parser's recursion; a few
parameters that crashed their view are checked; a signed webhook with ``\\u0000`` is stored.

Every JSON endpoint is found by walking ``app.url_map``, so a route added later is covered too.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import func, select

from app.integrations.payments import sign_payload
from app.models import Checkout, EventLog, OutboxEmail, StripeEvent, User
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, ProfileFactory

DEEP = ("[" * 20_000 + "]" * 20_000).encode()
DEEP_OBJECT = ('{"a":' * 20_000 + "1" + "}" * 20_000).encode()
NUL = "bad\x00value"
SURROGATE_JSON = b'{"email": "\\ud800@example.com", "password": "\\udfff-password", "slug": "\\ud800"}'
PARAM = re.compile(r"<(?:(\w+):)?(\w+)(?:\([^)]*\))?>")


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for pattern in (f"chatlink:{settings.celery_queue}:*", f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


def api_routes(app, methods=("POST", "DELETE", "GET")) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(method, concrete path) of every /api/ route, its parameters filled with fresh values."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = PARAM.sub(lambda m: _sample(m.group(1), m.group(0)), rule.rule)
        found += [(method, path) for method in sorted(rule.methods & set(methods))]
    return sorted(found)


def _sample(converter: str | None, raw: str) -> str:
    if converter == "uuid":
        return str(uuid.uuid4())
    if converter == "any":
        return raw.split("(", 1)[1].split(",", 1)[0].strip()
    return "x"


def error_shape(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, response.get_data(as_text=True)[:300]
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    assert set(body["error"]) <= {"code", "message", "fields"}
    return body["error"]


def counts(db_session) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    return tuple(
        db_session.scalar(select(func.count()).select_from(model))
        for model in (User, Checkout, EventLog, OutboxEmail, StripeEvent)
    )


@pytest.fixture
def admin_client(app, db_session):  # type: ignore[no-untyped-def]
    """A logged-in admin with a seller profile: the widest access, so refusals come from the
    input, not from the guards."""
    admin = AdminFactory()
    ProfileFactory(user=admin, slug="admin-seller")
    client = app.test_client()
    login(client, admin)
    return client


class TestEveryJsonEndpoint:
    @pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["deep-array", "deep-object"])
    def test_deep_json_is_a_400_in_the_error_shape(self, app, db_session, admin_client, body) -> None:
        token = csrf_token(admin_client)
        before = counts(db_session)
        for method, path in api_routes(app, ("POST", "DELETE")):
            response = admin_client.open(
                path, method=method, data=body, headers={"Content-Type": "application/json", "X-CSRFToken": token}
            )
            assert 400 <= response.status_code < 500, (method, path, response.status_code)
            error_shape(response)
        assert counts(db_session) == before

    def test_deep_json_with_another_content_type_too(self, app, db_session, admin_client) -> None:
        # The call endpoints read their body whatever its declared type (the pagehide beacon).
        token = csrf_token(admin_client)
        for method, path in api_routes(app, ("POST",)):
            response = admin_client.open(
                path, method=method, data=DEEP, headers={"Content-Type": "text/plain", "X-CSRFToken": token}
            )
            assert 400 <= response.status_code < 500, (method, path, response.status_code)

    @pytest.mark.parametrize(
        "body",
        [
            {"email": NUL, "password": NUL, "slug": NUL, "buyerEmail": NUL, "note": NUL, "token": NUL},
            {"requestId": NUL, "token": NUL, "clientId": NUL, "after": NUL, "reason": NUL, "details": NUL},
            {"displayName": NUL, "bio": NUL, "newPassword": NUL, "currentPassword": NUL, "buyerEmail": NUL},
            {NUL: "key with a NUL", "nested": {"list": [NUL]}},
        ],
        ids=["auth-and-checkout", "calls-and-reports", "profile-and-password", "keys-and-nesting"],
    )
    def test_nul_anywhere_is_a_422_naming_the_field(self, app, db_session, admin_client, body) -> None:
        token = csrf_token(admin_client)
        before = counts(db_session)
        for _method, path in api_routes(app, ("POST",)):
            if path.startswith("/api/webhooks/"):
                continue  # signed: tested below
            response = admin_client.post(path, json=body, headers={"X-CSRFToken": token})
            assert response.status_code == 422, (path, response.status_code, response.get_data(as_text=True)[:200])
            assert error_shape(response)["code"] == "invalid_characters"
        assert counts(db_session) == before

    def test_lone_surrogates_are_a_422(self, app, db_session, admin_client) -> None:
        token = csrf_token(admin_client)
        for _method, path in api_routes(app, ("POST",)):
            if path.startswith("/api/webhooks/"):
                continue
            response = admin_client.post(
                path, data=SURROGATE_JSON, headers={"Content-Type": "application/json", "X-CSRFToken": token}
            )
            assert response.status_code == 422, (path, response.status_code)
            assert error_shape(response)["fields"]

    def test_nul_in_any_query_argument_is_refused(self, app, db_session, admin_client) -> None:
        for _method, path in api_routes(app, ("GET",)):
            response = admin_client.get(path, query_string={"session_id": NUL, "status": NUL, "q": NUL})
            assert response.status_code == 422, (path, response.status_code)
            assert error_shape(response)["fields"]


def test_a_control_character_in_the_idempotency_key_is_a_422(app, db_session) -> None:
    ProfileFactory(slug="key-seller")
    client = app.test_client()
    response = client.post(
        "/api/payments/checkout",
        json={"slug": "key-seller", "buyerEmail": "b@example.org"},
        headers={"X-CSRFToken": csrf_token(client), "Idempotency-Key": "0123456789abcdef\x01"},
    )
    assert response.status_code == 422
    assert error_shape(response)["fields"] == {"submissionKey": "16-64"}


class TestPagesAndForms:
    def test_nul_in_page_forms_and_query_strings_is_a_clean_refusal(self, app, db_session, admin_client) -> None:
        token = csrf_token(admin_client)
        anonymous = app.test_client()
        anonymous_token = csrf_token(anonymous)
        before = counts(db_session)
        cases = [
            (anonymous, "/login", {"email": NUL, "password": "x" * 12, "csrf_token": anonymous_token}),
            (anonymous, "/forgot", {"email": NUL, "csrf_token": anonymous_token}),
            (anonymous, "/signup", {"email": NUL, "password": "x" * 12, "csrf_token": anonymous_token}),
            (
                anonymous,
                "/u/admin-seller",
                {
                    "buyer_email": "b@example.org",
                    "note": NUL,
                    "submission_key": "k" * 24,
                    "csrf_token": anonymous_token,
                },
            ),
            (admin_client, "/admin/erase", {"email": NUL, "csrf_token": token}),
            (admin_client, "/blocks", {"email": NUL, "csrf_token": token}),
        ]
        for client, path, form in cases:
            response = client.post(path, data=form)
            assert response.status_code in (400, 422), (path, response.status_code)
        for path in (
            "/success?session_id=",
            "/admin/events?type=",
            "/admin/sellers?q=",
            "/dev/mailbox.json?recipient=",
        ):
            response = admin_client.get(path + "%00")
            assert response.status_code in (400, 422), (path, response.status_code)
        assert counts(db_session) == before

    def test_a_nan_price_is_a_422(self, client, db_session) -> None:
        seller = ProfileFactory(slug="nan-seller").user
        login(client, seller)
        for price in ("sNaN", "NaN", "Infinity", "-inf", "1e999999"):
            response = client.post(
                "/profile",
                data={"display_name": "Nan", "slug": "nan-seller", "price": price, "csrf_token": csrf_token(client)},
            )
            assert response.status_code == 422, price

    @pytest.mark.parametrize("days", ["²", "٣", "99999999999999999999", "-1", "abc"])
    def test_odd_summary_days_fall_back_to_a_valid_range(self, db_session, admin_client, days) -> None:
        assert admin_client.get("/admin/summary", query_string={"days": days}).status_code == 200

    def test_an_oversized_mailbox_limit_is_clamped(self, db_session, admin_client) -> None:
        assert admin_client.get("/dev/mailbox.json?limit=99999999999999999999999").status_code == 200


class TestSignalPoll:
    @pytest.mark.parametrize("after", [123, ["1-0"], {"a": 1}, True, "9" * 25 + "-0", "1-" + "9" * 25, "x" * 5000])
    def test_a_bad_cursor_is_a_422(self, client, db_session, after) -> None:
        from tests.trust_support import buyer_token, finished_call

        call = finished_call(status=__import__("app.models", fromlist=["RequestStatus"]).RequestStatus.ACCEPTED)
        call.video_provider = "builtin"
        db_session.flush()
        body = {"requestId": str(call.id), "token": buyer_token(call), "clientId": "window-0001", "after": after}
        response = client.post("/api/video/signal/poll", json=body)
        assert response.status_code == 422, (after, response.status_code)
        assert set(error_shape(response)["fields"]) == {"after"}


class TestSignedWebhook:
    def post(self, app, payload: bytes):  # type: ignore[no-untyped-def]
        secret = app.extensions["settings"].stripe_webhook_secret
        return app.test_client().post(
            "/api/webhooks/stripe",
            data=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": sign_payload(payload, secret)},
        )

    def test_a_nul_in_a_signed_event_is_stored_safely(self, app, db_session) -> None:
        event_id = f"evt_nul_{uuid.uuid4().hex[:8]}"
        payload = json.dumps(
            {"id": event_id, "type": "customer.updated\u0000", "data": {"object": {"name": "a\u0000b", "x\u0000": 1}}}
        ).encode()
        assert b"\\u0000" in payload

        assert self.post(app, payload).status_code == 200

        row = db_session.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == event_id)).one()
        assert "\x00" not in json.dumps(row.payload, ensure_ascii=False)
        assert row.payload["data"]["object"]["name"] == "a\ufffdb"

    def test_a_lone_surrogate_in_a_signed_event_is_stored_safely(self, app, db_session) -> None:
        event_id = f"evt_sur_{uuid.uuid4().hex[:8]}"
        payload = b'{"id": "%s", "type": "customer.updated", "data": {"object": {"name": "\\ud800"}}}' % (
            event_id.encode()
        )
        assert self.post(app, payload).status_code == 200
        row = db_session.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == event_id)).one()
        assert row.payload["data"]["object"]["name"] == "\ufffd"

    def test_a_deep_signed_body_is_a_400_and_nothing_is_stored(self, app, db_session) -> None:
        before = counts(db_session)
        response = self.post(app, DEEP_OBJECT)
        assert response.status_code == 400
        error_shape(response)
        assert counts(db_session) == before

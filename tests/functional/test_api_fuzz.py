"""Property-based fuzz of every operation of the OpenAPI document (issue 16).

For each operation, schemathesis builds requests from the document itself: path, query, header
and body values that fit the schemas (its positive mode) and values that break them (negative
mode: wrong types, missing and unknown fields, hostile strings), and now and then the fuzz puts in
values that exist (a real request id, the buyer's call credential, a seller's slug) so that the
checks behind the first refusal run too. Requests go through the Flask client, in process, as a
logged-in admin who is also a seller, with a valid CSRF token, so refusals come from the input
rather than from authentication.

The properties: no 5xx, ever; every 4xx in the documented error shape; every 2xx with a
documented status and a body matching its documented schema.

``FUZZ_EXAMPLES`` (default 15) sets the examples per operation; runs are derandomised, so CI sees
the same requests every time. Set ``FUZZ_SEED`` for a different sample.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet
from schemathesis.generation import GenerationMode
from sqlalchemy import select

from app.models import RequestStatus, User
from app.openapi import build_document
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, ProfileFactory
from tests.trust_support import buyer_token, finished_call

DOCUMENT = build_document("http://127.0.0.1:5000")
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
# The HTML page is not JSON; the upload is multipart (its bounds have their own tests).
SKIPPED = {("/api/docs", "get"), ("/api/profile/photo", "post")}
OPERATIONS = [
    (path, method) for path, item in DOCUMENT["paths"].items() for method in item if (path, method) not in SKIPPED
]


def resolve(schema: Any) -> Any:
    """``schema`` with every ``$ref`` to a component replaced by the component (ours do not nest
    recursively), as ``hypothesis-jsonschema`` and ``jsonschema`` take one self-contained schema."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return resolve(DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
        return {key: resolve(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [resolve(item) for item in schema]
    return schema


ERROR_SCHEMA = resolve({"$ref": "#/components/schemas/Error"})


class World:
    """What exists while one operation is fuzzed: the admin-seller, a buyer's accepted call and
    a pending request, and the values worth sending now and then."""

    def __init__(self, db_session: Any) -> None:
        self.admin = AdminFactory()
        ProfileFactory(user=self.admin, slug="fuzz-seller", display_name="Fuzz Seller")
        accepted = finished_call(seller=self.admin, status=RequestStatus.ACCEPTED)
        accepted.video_provider = "builtin"
        pending = finished_call(seller=self.admin, status=RequestStatus.PENDING)
        db_session.flush()
        self.known: dict[str, list[Any]] = {
            "request_id": [str(accepted.id), str(pending.id)],
            "requestId": [str(accepted.id)],
            "token": [buyer_token(accepted)],
            "clientId": ["fuzz-window-1"],
            "slug": ["fuzz-seller"],
            "session_id": [accepted.transaction.stripe_checkout_session_id],
            "email": [self.admin.email],
            "buyerEmail": ["buyer@example.org"],
        }


def with_known_values(draw: Any, world: World, values: dict[str, Any] | None) -> dict[str, Any] | None:
    """Now and then, swap generated values for ones that exist."""
    if not isinstance(values, dict) or not draw(st.booleans()):
        return values
    return {**values, **{name: known[0] for name, known in world.known.items() if name in values}}


def fill_path(path: str, values: dict[str, Any]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


def log_in_again(client: Any, db_session: Any, user: User) -> str:
    """Every example starts logged in, whatever the previous one did (log-out, sign-out)."""
    db_session.refresh(user)
    login(client, user)
    return csrf_token(client)


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_no_operation_answers_5xx_and_every_refusal_has_the_error_shape(app, db_session, path, method) -> None:
    operation = DOCUMENT["paths"][path][method]
    world = World(db_session)
    client = app.test_client()
    generated = SCHEMA[path][method.upper()]
    cases = st.one_of(generated.as_strategy(GenerationMode.POSITIVE), generated.as_strategy(GenerationMode.NEGATIVE))

    @seed(int(os.environ.get("FUZZ_SEED", "16")))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize="FUZZ_SEED" not in os.environ,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, data=st.data())
    def check(case: Any, data: st.DataObject) -> None:
        path_values = with_known_values(data.draw, world, case.path_parameters) or {}
        query = with_known_values(data.draw, world, case.query) or {}
        query = {name: value if isinstance(value, str) else json.dumps(value) for name, value in query.items()}
        headers = {name: str(value) for name, value in (case.headers or {}).items() if name.lower() != "cookie"}
        headers["X-CSRFToken"] = log_in_again(client, db_session, world.admin)
        kwargs: dict[str, Any] = {"query_string": query, "headers": headers}
        if isinstance(case.body, bytes | str):
            # Negative mode also sends raw bodies, under any content type.
            kwargs |= {"data": case.body, "content_type": case.media_type or "application/octet-stream"}
        elif not isinstance(case.body, NotSet):
            kwargs["json"] = with_known_values(data.draw, world, case.body)
        url = fill_path(path, path_values)
        response = client.open(url, method=method.upper(), **kwargs)
        where = f"{method.upper()} {url} {json.dumps(kwargs, default=str)[:400]}"
        assert response.status_code < 500, f"{where} -> {response.status_code} {response.get_data(as_text=True)[:300]}"
        check_documented(operation, response, where)

    check()


def check_documented(operation: dict[str, Any], response: Any, where: str) -> None:
    status = response.status_code
    if 400 <= status < 500:
        jsonschema.validate(response.get_json(), ERROR_SCHEMA)
        return
    documented = operation["responses"].get(str(status))
    assert documented is not None, f"{where} -> {status}, not documented"
    content = documented.get("content", {}).get("application/json")
    if content is not None:
        jsonschema.validate(response.get_json(), resolve(copy.deepcopy(content["schema"])))


def test_every_operation_is_fuzzed_but_the_listed_ones() -> None:
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert documented - set(OPERATIONS) == SKIPPED


def test_the_world_is_real(app, db_session) -> None:
    """The known values open something (so the fuzz reaches past the first refusal)."""
    world = World(db_session)
    client = app.test_client()
    log_in_again(client, db_session, world.admin)
    listed = client.get("/api/requests").get_json()["requests"]
    assert {row["id"] for row in listed} >= set(world.known["request_id"])
    assert db_session.scalar(select(User).where(User.id == world.admin.id)) is not None
    body = {"requestId": world.known["requestId"][0], "token": world.known["token"][0], "clientId": "fuzz-window-1"}
    assert client.post("/api/video/join", json=body).status_code in (200, 409)
    assert uuid.UUID(world.known["request_id"][1])

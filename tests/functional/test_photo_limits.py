"""Issue 16, finding 4: photo uploads are rate limited per seller and per address, and a
decompression bomb is refused in the error shape."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.conftest import csrf_token, login
from tests.factories import ProfileFactory
from tests.functional.test_profile_photos import multipart
from tests.unit.test_photos import make_image


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    def clear() -> None:
        for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
            redis.delete(key)

    clear()
    yield
    clear()


def api_upload(client, data: bytes):  # type: ignore[no-untyped-def]
    return client.post("/api/profile/photo", headers={"X-CSRFToken": csrf_token(client)}, **multipart(data))


def test_the_issues_bomb_is_a_422_in_the_error_shape(app, client, db_session) -> None:
    login(client, ProfileFactory().user)
    out = io.BytesIO()
    Image.new("RGB", (6300, 6300), (200, 120, 40)).save(out, format="PNG", optimize=True)
    response = api_upload(client, out.getvalue())
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_photo"


def test_one_seller_gets_429_after_five_uploads_a_minute(app, client, db_session) -> None:
    login(client, ProfileFactory().user)
    photo = make_image("JPEG", size=(300, 300))
    statuses = [api_upload(client, photo).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    error = api_upload(client, photo)
    assert error.get_json()["error"]["code"] == "rate_limited" and "Retry-After" in error.headers


def test_the_page_and_the_api_share_the_sellers_budget(app, client, db_session) -> None:
    login(client, ProfileFactory().user)
    photo = make_image("JPEG", size=(300, 300))
    for _ in range(5):
        assert api_upload(client, photo).status_code == 200
    page = client.post("/profile/photo", **multipart(photo, csrf_token=csrf_token(client)))
    assert page.status_code == 429


def test_one_address_gets_429_after_ten_uploads_a_minute_whoever_sends_them(app, db_session) -> None:
    photo = make_image("JPEG", size=(300, 300))
    statuses = []
    for _ in range(4):
        client = app.test_client()
        login(client, ProfileFactory().user)
        statuses += [api_upload(client, photo).status_code for _ in range(3)]
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]

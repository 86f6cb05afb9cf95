"""Photo upload (page and API) and photo serving under /media/."""

import io

import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app.models import Profile
from app.services.photos import MAX_PHOTO_BYTES
from app.web.profile import PHOTO_CACHE_CONTROL
from tests.conftest import login
from tests.factories import ProfileFactory, UserFactory
from tests.functional.test_profile_page import page_csrf
from tests.unit.test_photos import exif_with_secrets, make_image


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    """Uploads are rate limited (tests/functional/test_photo_limits.py): each test starts afresh."""
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)


@pytest.fixture
def profile(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory()


@pytest.fixture
def uploads(app):  # type: ignore[no-untyped-def]
    return app.extensions["settings"].instance_path / "uploads"


def stored_files(uploads, profile) -> list[str]:  # type: ignore[no-untyped-def]
    folder = uploads / "photos" / profile.id.hex
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def multipart(data: bytes | None, filename: str = "me.jpg", **fields: str) -> dict:
    """A multipart body encoded in memory. (The test client would spool a large body to a
    temporary file that nothing closes, which pytest reports as a ResourceWarning.)"""
    values = MultiDict(fields)
    if data is not None:
        values.add("photo", FileStorage(io.BytesIO(data), filename=filename, content_type="application/octet-stream"))
    boundary, body = encode_multipart(values)
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def upload_page(client, data: bytes, filename: str = "me.jpg"):  # type: ignore[no-untyped-def]
    return client.post("/profile/photo", **multipart(data, filename, csrf_token=page_csrf(client)))


def current_key(db_session, profile) -> str | None:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.get(Profile, profile.id).photo_key


class TestUploadPage:
    def test_good_photo_is_stored_and_served_with_long_cache(self, client, db_session, profile, uploads) -> None:
        login(client, profile.user)
        original = make_image("JPEG", size=(800, 600), exif=exif_with_secrets().tobytes())
        response = upload_page(client, original)
        assert response.status_code == 303
        key = current_key(db_session, profile)
        assert key and stored_files(uploads, profile) == sorted(
            [f"{key.rsplit('/', 1)[1]}/512.jpg", f"{key.rsplit('/', 1)[1]}/thumb.jpg"]
        )

        served = client.get(f"/media/{key}/512.jpg")
        assert served.status_code == 200
        assert served.mimetype == "image/jpeg"
        assert served.headers["Cache-Control"] == PHOTO_CACHE_CONTROL
        image = Image.open(io.BytesIO(served.data))
        assert image.size == (512, 512) and not image.getexif()
        assert b"SecretCam" not in served.data  # metadata stripped
        thumb = client.get(f"/media/{key}/thumb.jpg")
        assert Image.open(io.BytesIO(thumb.data)).size == (128, 128)
        # The profile page and the public page show it.
        assert f"/media/{key}/512.jpg" in client.get("/profile").get_data(as_text=True)
        assert f"/media/{key}/512.jpg" in client.get(f"/u/{profile.slug}").get_data(as_text=True)

    def test_new_photo_gets_a_new_url_and_the_old_files_go(self, client, db_session, profile, uploads) -> None:
        login(client, profile.user)
        upload_page(client, make_image("PNG"))
        first = current_key(db_session, profile)
        upload_page(client, make_image("WEBP", size=(300, 300)), "me.webp")
        second = current_key(db_session, profile)
        assert first != second
        assert client.get(f"/media/{first}/512.jpg").status_code == 404
        assert client.get(f"/media/{second}/512.jpg").status_code == 200
        assert len(stored_files(uploads, profile)) == 2

    @pytest.mark.parametrize(
        ("data", "filename", "message"),
        [
            (b"just some text, honest\n" * 50, "holiday.jpg", "not an image we can read"),
            (make_image("GIF", mode="P"), "funny.gif", "GIF images are not supported"),
            (make_image("JPEG") + b"\0" * MAX_PHOTO_BYTES, "huge.jpg", "the limit is 5 MB"),
            (b"\xff\xd8\xff\xe0" + b"broken" * 50, "broken.jpg", "damaged"),
        ],
        ids=["text-renamed-jpg", "gif", "over-5-mb", "broken-jpeg"],
    )
    def test_refused_uploads_say_why_and_store_nothing(
        self, client, db_session, profile, uploads, data: bytes, filename: str, message: str
    ) -> None:
        login(client, profile.user)
        response = upload_page(client, data, filename)
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
        assert current_key(db_session, profile) is None
        assert stored_files(uploads, profile) == []

    def test_request_over_the_upload_limit_gets_a_friendly_413(self, client, db_session, profile, uploads) -> None:
        login(client, profile.user)
        response = upload_page(client, b"\xff\xd8\xff" + b"\0" * (7 * 1024 * 1024))
        assert response.status_code == 413
        assert "larger than 5 MB" in response.get_data(as_text=True)
        assert current_key(db_session, profile) is None

    def test_no_file_chosen(self, client, profile) -> None:
        login(client, profile.user)
        response = client.post("/profile/photo", **multipart(None, csrf_token=page_csrf(client)))
        assert response.status_code == 422
        assert "Choose a photo" in response.get_data(as_text=True)

    def test_needs_a_profile_first(self, client, db_session) -> None:
        login(client, UserFactory())
        response = upload_page(client, make_image("PNG"))
        assert response.status_code == 422
        assert "Save your profile first" in response.get_data(as_text=True)

    def test_missing_csrf_is_refused(self, client, db_session, profile) -> None:
        login(client, profile.user)
        response = client.post("/profile/photo", **multipart(make_image("PNG"), "a.png"))
        assert response.status_code == 400
        assert current_key(db_session, profile) is None

    def test_remove_photo(self, client, db_session, profile, uploads) -> None:
        login(client, profile.user)
        upload_page(client, make_image("PNG"))
        key = current_key(db_session, profile)
        response = client.post("/profile/photo/delete", data={"csrf_token": page_csrf(client)})
        assert response.status_code == 303
        assert current_key(db_session, profile) is None
        assert client.get(f"/media/{key}/512.jpg").status_code == 404
        assert stored_files(uploads, profile) == []


class TestUploadApi:
    def test_upload_and_remove(self, client, db_session, profile) -> None:
        login(client, profile.user)
        token = page_csrf(client)
        response = client.post(
            "/api/profile/photo",
            **multipart(make_image("PNG"), "me.png"),
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == 200
        body = response.get_json()
        key = current_key(db_session, profile)
        assert body["photoUrl"].endswith(f"/media/{key}/512.jpg") and body["photoUrl"].startswith("http")
        assert body["thumbnailUrl"].endswith(f"/media/{key}/thumb.jpg")
        removed = client.delete("/api/profile/photo", headers={"X-CSRFToken": token})
        assert removed.status_code == 200 and removed.get_json()["photoUrl"] is None

    def test_fake_image_is_422_with_the_reason(self, client, db_session, profile, uploads) -> None:
        login(client, profile.user)
        response = client.post(
            "/api/profile/photo",
            **multipart(b"%PDF-1.4 not a photo", "me.jpg"),
            headers={"X-CSRFToken": page_csrf(client)},
        )
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "invalid_photo" and "not an image" in error["fields"]["photo"]
        assert stored_files(uploads, profile) == []

    def test_too_large_request_is_json_413(self, client, profile) -> None:
        login(client, profile.user)
        response = client.post(
            "/api/profile/photo",
            **multipart(b"\0" * (7 * 1024 * 1024), "big.jpg"),
            headers={"X-CSRFToken": page_csrf(client)},
        )
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "too_large"

    def test_needs_login(self, client) -> None:
        assert client.post("/api/profile/photo").status_code in (400, 401)


class TestMedia:
    @pytest.mark.parametrize(
        "path",
        [
            "/media/photos/" + "0" * 32 + "/" + "1" * 20 + "/512.jpg",  # well-formed but absent
            "/media/../app/config.py",
            "/media/photos/../../secret",
            "/media/photos/x/y/512.jpg",
            "/media/photos/" + "0" * 32 + "/" + "1" * 20 + "/original.png",
        ],
    )
    def test_unknown_or_unsafe_keys_are_404(self, client, path: str) -> None:
        assert client.get(path).status_code == 404

"""Photos in an S3 bucket (a real S3-speaking server, moto_server over HTTP): uploaded through the
API, served by the app under /media/ with year-long caching, replaced and deleted with the account."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.integrations.storage import S3Storage
from app.web.profile import PHOTO_CACHE_CONTROL
from tasks import photos as photo_tasks
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, ProfileFactory
from tests.fakes.s3 import S3Server, _free_port
from tests.functional.test_profile_photos import multipart
from tests.unit.test_photos import make_image


@pytest.fixture
def bucket(app, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The app stores photos in ``s3_bucket``: what ``storage_for`` builds when S3_BUCKET is set."""
    monkeypatch.setitem(app.extensions, "storage", S3Storage(s3_bucket, **s3_server.storage_options))
    return s3_bucket


@pytest.fixture
def seller(client, db_session):  # type: ignore[no-untyped-def]
    profile = ProfileFactory()
    login(client, profile.user)
    return profile


def upload(client, data: bytes) -> str:  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/profile/photo", headers={"X-CSRFToken": csrf_token(client)}, **multipart(data, "me.png")
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["photoUrl"].split("/media/", 1)[1]


def test_an_upload_lands_in_the_bucket_and_the_app_serves_it(client, seller, bucket, s3_server) -> None:  # type: ignore[no-untyped-def]
    path = upload(client, make_image("PNG", size=(900, 700)))
    folder = path.rsplit("/", 1)[0]
    assert s3_server.keys(bucket) == [f"{folder}/512.jpg", f"{folder}/thumb.jpg"]
    assert s3_server.head(bucket, path)["ContentType"] == "image/jpeg"

    served = client.get(f"/media/{path}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.data == s3_server.client().get_object(Bucket=bucket, Key=path)["Body"].read()
    assert Image.open(io.BytesIO(served.data)).size == (512, 512)
    assert served.headers["Cache-Control"] == PHOTO_CACHE_CONTROL
    assert served.headers["ETag"] == f'"{folder.rsplit("/", 1)[1]}"'


def test_a_revalidation_is_answered_without_reading_the_bucket(client, seller, bucket, s3_server) -> None:  # type: ignore[no-untyped-def]
    path = upload(client, make_image("PNG"))
    etag = client.get(f"/media/{path}").headers["ETag"]
    s3_server.client().delete_object(Bucket=bucket, Key=path)  # the bucket no longer has it...
    again = client.get(f"/media/{path}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""  # ...and a browser holding it is told it is fine
    assert client.get(f"/media/{path}").status_code == 404


def test_a_new_photo_replaces_the_old_objects(client, seller, bucket, s3_server) -> None:  # type: ignore[no-untyped-def]
    first = upload(client, make_image("PNG"))
    second = upload(client, make_image("WEBP", size=(300, 300)))
    assert first != second
    assert s3_server.keys(bucket) == sorted([second, second.replace("/512.jpg", "/thumb.jpg")])
    assert client.get(f"/media/{first}").status_code == 404


def test_an_unreachable_bucket_is_a_503_not_a_missing_photo(app, client, seller, db_session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY

    down = S3Storage(
        "photos",
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    monkeypatch.setitem(app.extensions, "storage", down)
    assert client.get(f"/media/photos/{seller.id.hex}/{'a' * 20}/512.jpg").status_code == 503
    refused = client.post(
        "/api/profile/photo", headers={"X-CSRFToken": csrf_token(client)}, **multipart(make_image("PNG"), "me.png")
    )
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "storage_unavailable"
    db_session.expire_all()
    assert db_session.get(type(seller), seller.id).photo_key is None  # the profile still has no photo


def test_deleting_the_account_deletes_its_objects(app, client, seller, bucket, s3_server, enqueued) -> None:  # type: ignore[no-untyped-def]
    upload(client, make_image("PNG"))
    other = ProfileFactory()
    S3Storage(bucket, **s3_server.storage_options).save(
        f"photos/{other.id.hex}/{'c' * 20}/512.jpg", b"someone else's", content_type="image/jpeg"
    )
    response = client.post(
        "/api/account/delete", json={"password": PASSWORD}, headers={"X-CSRFToken": csrf_token(client)}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    (task,) = [args for name, args, _ in enqueued if name == "tasks.photos.delete_profile_photos"]
    with app.app_context():  # the task runs with this app's storage, as a worker of this app would
        assert photo_tasks.delete_profile_photos(*task) == 2
        assert s3_server.keys(bucket) == [f"photos/{other.id.hex}/{'c' * 20}/512.jpg"]
        assert photo_tasks.delete_profile_photos(*task) == 0  # a repeat finds nothing left

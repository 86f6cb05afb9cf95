"""The storage adapter's two backends, S3 against a real S3-speaking server (moto_server over HTTP
on 127.0.0.1, started by the tests) and the local disk, held to the same behaviour."""

from __future__ import annotations

import uuid

import pytest

from app.config import Settings
from app.integrations import storage as storage_module
from app.integrations.storage import FileNotStored, LocalStorage, S3Storage, Storage, StorageError, storage_for
from tests.fakes.s3 import S3Server


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return LocalStorage(tmp_path / "uploads")
    server: S3Server = request.getfixturevalue("s3_server")
    return S3Storage(request.getfixturevalue("s3_bucket"), **server.storage_options)


class TestBothBackends:
    def test_save_open_delete(self, storage: Storage) -> None:
        storage.save("photos/a/b/512.jpg", b"jpeg bytes", content_type="image/jpeg")
        assert storage.open("photos/a/b/512.jpg") == b"jpeg bytes"
        storage.delete("photos/a/b/512.jpg")
        storage.delete("photos/a/b/512.jpg")  # repeat-safe
        with pytest.raises(FileNotStored):
            storage.open("photos/a/b/512.jpg")

    def test_a_key_is_written_once(self, storage: Storage) -> None:
        storage.save("photos/a/digest/512.jpg", b"first", content_type="image/jpeg")
        storage.save("photos/a/digest/512.jpg", b"second", content_type="image/jpeg")
        assert storage.open("photos/a/digest/512.jpg") == b"first"

    def test_delete_prefix_takes_the_folder_and_nothing_else(self, storage: Storage) -> None:
        for key in ("photos/p1/d1/512.jpg", "photos/p1/d1/thumb.jpg", "photos/p1/d2/512.jpg", "photos/p10/d/512.jpg"):
            storage.save(key, key.encode(), content_type="image/jpeg")
        assert storage.delete_prefix("photos/p1/") == 3
        assert storage.delete_prefix("photos/p1/") == 0
        assert storage.open("photos/p10/d/512.jpg") == b"photos/p10/d/512.jpg"
        with pytest.raises(FileNotStored):
            storage.open("photos/p1/d2/512.jpg")

    @pytest.mark.parametrize("key", ["../escape.jpg", "/etc/passwd", "a//b", "a/../../b", ".hidden", "a/b/", "sp ace"])
    def test_unsafe_keys_are_refused(self, storage: Storage, key: str) -> None:
        with pytest.raises(StorageError):
            storage.save(key, b"x", content_type="image/jpeg")

    @pytest.mark.parametrize("prefix", ["", "/", "photos", "../", "photos/../"])
    def test_a_prefix_must_name_a_folder(self, storage: Storage, prefix: str) -> None:
        with pytest.raises(StorageError):
            storage.delete_prefix(prefix)


class TestS3:
    def test_objects_carry_their_content_type(self, s3_server: S3Server, s3_bucket: str) -> None:
        S3Storage(s3_bucket, **s3_server.storage_options).save("photos/x/y.jpg", b"j", content_type="image/jpeg")
        assert s3_server.head(s3_bucket, "photos/x/y.jpg")["ContentType"] == "image/jpeg"

    def test_delete_prefix_goes_page_by_page(
        self, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(storage_module, "_DELETE_BATCH", 2)  # five objects: three list pages
        storage = S3Storage(s3_bucket, **s3_server.storage_options)
        for n in range(5):
            storage.save(f"photos/p/{n}.jpg", b"x", content_type="image/jpeg")
        storage.save("photos/q/0.jpg", b"x", content_type="image/jpeg")
        assert storage.delete_prefix("photos/p/") == 5
        assert s3_server.keys(s3_bucket) == ["photos/q/0.jpg"]

    def test_a_missing_bucket_is_a_storage_error_not_a_missing_file(self, s3_server: S3Server) -> None:
        storage = S3Storage(f"nowhere-{uuid.uuid4().hex[:8]}", **s3_server.storage_options)
        with pytest.raises(StorageError) as raised:
            storage.open("photos/a/b.jpg")
        assert not isinstance(raised.value, FileNotStored)
        with pytest.raises(StorageError):
            storage.save("photos/a/b.jpg", b"x", content_type="image/jpeg")

    def test_an_unreachable_endpoint_is_a_storage_error(self) -> None:
        from tests.fakes.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, _free_port

        storage = S3Storage(
            "photos",
            endpoint_url=f"http://127.0.0.1:{_free_port()}",
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
        )
        for attempt in (lambda: storage.open("a/b.jpg"), lambda: storage.delete("a/b.jpg")):
            with pytest.raises(StorageError) as raised:
                attempt()
            assert not isinstance(raised.value, FileNotStored)


class TestStorageFor:
    def test_local_disk_by_default(self, tmp_path) -> None:
        storage = storage_for(Settings.from_env({"INSTANCE_PATH": str(tmp_path)}, dotenv=False))
        assert isinstance(storage, LocalStorage) and storage.root == tmp_path / "uploads"

    def test_s3_when_a_bucket_is_configured(self, s3_server: S3Server, s3_bucket: str) -> None:
        settings = Settings.from_env(s3_server.env(s3_bucket), dotenv=False)
        storage = storage_for(settings)
        assert isinstance(storage, S3Storage)
        storage.save("photos/k/v.jpg", b"v", content_type="image/jpeg")
        assert s3_server.keys(s3_bucket) == ["photos/k/v.jpg"]

"""Where uploaded files live: a small interface (save, open, delete, delete everything under a
prefix) with two backends, chosen in ``storage_for()``.

* ``LocalStorage`` keeps files under ``<instance_path>/uploads``: the embedded default, for one
  machine (development, tests, demos).
* ``S3Storage`` keeps them in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO) when
  ``S3_BUCKET`` is set: what several web hosts behind a load balancer need, since each serves
  photos that another one received.

Keys are relative, slash-separated names made only of safe characters, so a key can never escape
the storage root. Callers use content-addressed keys (a digest of the bytes is part of the key),
so a key is written once and never changes: ``save`` of a key that already exists keeps what is
there, which is the same bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from app.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
MAX_KEY_LENGTH = 200
# S3's DeleteObjects takes at most this many keys per call.
_DELETE_BATCH = 1000


class StorageError(Exception):
    """The key is malformed or the backend failed."""


class FileNotStored(StorageError):
    """Nothing is stored under that key."""


class Storage(Protocol):
    def save(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def open(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe storage key, else raise ``StorageError``."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"invalid storage key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix is a key followed by ``/``: it names a folder, never the whole store."""
    if not prefix.endswith("/"):
        raise StorageError(f"invalid storage prefix: {prefix!r}")
    check_key(prefix[:-1])
    return prefix


class LocalStorage:
    """Files on the local disk. Writes go to a temporary file first and are renamed into place,
    so a reader never sees half a file."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def save(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        if path.is_file():
            return  # written once: the key names these very bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise FileNotStored(key) from None

    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is already gone is not an error (repeat-safe)."""
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every file under ``prefix`` (``photos/<id>/``); returns how many went."""
        folder = self.root / check_prefix(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count


class S3Storage:
    """Objects in an S3-compatible bucket, through boto3.

    The client is made on first use in each process (a client made before a fork would share its
    connection pool with the children, and gunicorn and Celery both fork); boto3 clients are
    thread-safe once made. Timeouts are short and retries few: a web request waits on them.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        # None lets boto3 find credentials itself (an instance role, a web identity token).
        self._credentials = (access_key_id, secret_access_key)
        self._client: S3Client | None = None
        self._client_pid = 0
        self._lock = threading.Lock()

    @property
    def client(self) -> S3Client:
        if self._client is None or self._client_pid != os.getpid():
            with self._lock:
                if self._client is None or self._client_pid != os.getpid():
                    self._client = self._make_client()
                    self._client_pid = os.getpid()
        return self._client

    def _make_client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        # Path-style addressing on a custom endpoint: MinIO and local servers have no per-bucket
        # host names; R2 accepts both. AWS itself (no endpoint) keeps boto3's virtual-host style.
        style: Literal["path", "auto"] = "path" if self.endpoint_url else "auto"
        config = Config(
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 3, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": style},
        )
        access_key, secret_key = self._credentials
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )

    def save(self, key: str, data: bytes, *, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # If-None-Match: * makes the write conditional, so an object is never replaced.
            self.client.put_object(
                Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as error:
            # 412: already there (the same bytes, by the key's digest); 409: a concurrent write
            # of that same object is under way.
            if _status(error) not in (409, 412):
                raise StorageError(f"could not store {key}: {_code(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"could not store {key}: {type(error).__name__}") from None

    def open(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                raise FileNotStored(key) from None
            raise StorageError(f"could not read {key}: {_code(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"could not read {key}: {type(error).__name__}") from None

    def delete(self, key: str) -> None:
        """Remove ``key``; S3 answers a missing key with success too (repeat-safe)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"could not delete {key}: {type(error).__name__}") from None

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``, a thousand per request; returns how many went."""
        from botocore.exceptions import BotoCoreError, ClientError

        deleted = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=check_prefix(prefix), PaginationConfig={"PageSize": _DELETE_BATCH}
            )
            for page in pages:
                keys: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                if answer.get("Errors"):
                    raise StorageError(f"could not delete {len(answer['Errors'])} objects under {prefix}")
                deleted += len(keys)
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"could not delete under {prefix}: {type(error).__name__}") from None
        return deleted


def _status(error: Exception) -> int:
    return int(getattr(error, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", "error"))


def storage_for(settings: Settings) -> Storage:
    if settings.s3_bucket:
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
        )
    return LocalStorage(settings.instance_path / "uploads")

"""Where uploaded files live: a small interface with save, open and delete by key.

``LocalStorage`` keeps files under ``<instance_path>/uploads``; it is the default and the only
backend today. An object store (S3, R2, GCS) would implement the same three methods and be
chosen in ``storage_for()`` when its setting is present, without touching the callers.
Keys are relative, slash-separated names made only of safe characters, so a key can never
escape the storage root.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from app.config import Settings

_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
MAX_KEY_LENGTH = 200


class StorageError(Exception):
    """The key is malformed or the backend failed."""


class FileNotStored(StorageError):
    """Nothing is stored under that key."""


class Storage(Protocol):
    def save(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def open(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe storage key, else raise ``StorageError``."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"invalid storage key: {key!r}")
    return key


class LocalStorage:
    """Files on the local disk. Writes go to a temporary file first and are renamed into place,
    so a reader never sees half a file."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def save(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
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


def storage_for(settings: Settings) -> Storage:
    return LocalStorage(settings.instance_path / "uploads")

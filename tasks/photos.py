"""Deleting a deleted account's photos from storage (``app.services.photos``; local disk or an S3
bucket), queued by ``app.services.privacy.delete_account`` and published after commit."""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db
from app.integrations.storage import StorageError
from tasks import _runtime


# A bucket that is unreachable now is retried for about an hour: the account is gone already and
# its photos must follow it.
@chatlink_task(retry_on=(StorageError,), max_retries=8, backoff=30)
def delete_profile_photos(profile_id: str) -> int:
    from app.services.photos import delete_removed_profile_photos

    with db.session_scope() as session:
        return delete_removed_profile_photos(session, uuid.UUID(profile_id), storage=_runtime.storage())

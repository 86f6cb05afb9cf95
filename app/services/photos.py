"""Profile photos: check an upload by decoding it, strip everything but the pixels, cut it to a
square, store it, and point the profile at it.

Decoding is bounded before it starts. A small file can describe a huge canvas (a flat
6300x6300 PNG is 130 KB and used to cost about 320 MB and a second to decode), so the size in
the header is checked before any pixel is decoded: a JPEG is decoded at reduced scale through
its DCT (``draft``), which costs little whatever the camera, and any other image may not
decode to more than ``MAX_DECODED_PIXELS``. The decoded picture is then box-reduced to about
twice the stored size before the slower filters run, so an upload costs tens of milliseconds
and tens of megabytes at most, in the request thread (``bench/photos.py`` measures it).

The upload is never stored as sent. It is sniffed by its first bytes (the file name and the
browser's content type are the sender's claims, not facts), decoded in full by Pillow, then
re-encoded from the pixels alone, so EXIF (GPS position, camera serial), XMP, comments and text
chunks cannot survive. Stored keys contain a digest of the picture, so a new photo gets a new
URL and the old one can be cached forever.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import on_commit, utcnow
from app.integrations.storage import Storage, StorageError
from app.models import PhotoDeletion, Profile
from app.queue import enqueue_after_commit
from app.refusals import Invalid, Unavailable
from app.services.sweeping import Moment, looks_for
from tasks import photos as photo_tasks

log = logging.getLogger(__name__)

MAX_PHOTO_BYTES = 5 * 1024 * 1024
# The canvas a header may claim: any camera's JPEG (a 61 MP one included), which ``draft``
# decodes at 1/8 scale at most. Pillow's own bomb check uses the same number.
MAX_HEADER_PIXELS = 64_000_000
# What may actually be decoded into memory: 8 megapixels (4K UHD screenshots fit), about
# 32 MB as RGBA. A PNG or WebP above it is refused; a JPEG is drafted below it.
MAX_DECODED_PIXELS = 4096 * 2048
Image.MAX_IMAGE_PIXELS = MAX_HEADER_PIXELS
MIN_PHOTO_SIDE = 64
PHOTO_SIDE = 512
THUMB_SIDE = 128
VARIANTS = ("512", "thumb")

_ACCEPTED = {"JPEG", "PNG", "WEBP"}
# Recognised but refused, so the message can say what the file is rather than "not an image".
_REFUSED_NAMES = {"GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF", "HEIC": "HEIC", "AVIF": "AVIF", "ICO": "ICO"}
_ACCEPTED_HINT = "Use a JPEG, PNG or WebP photo."


class PhotoError(Invalid):
    """The upload is refused; the message is written for the seller."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_photo", message, field="photo")


@dataclass(frozen=True)
class ProcessedPhoto:
    photo: bytes  # PHOTO_SIDE square JPEG
    thumbnail: bytes  # THUMB_SIDE square JPEG
    digest: str  # of the photo's bytes; part of its storage key and so of its URL


def sniff_format(data: bytes) -> str | None:
    """Name the image format from its first bytes, or None when it is not a known image."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand in (b"avif", b"avis") else "HEIC" if brand[:3] in (b"hei", b"hev", b"mif") else None
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    return None


def process_photo(data: bytes) -> ProcessedPhoto:
    """Verify ``data`` is a JPEG, PNG or WebP photo and return clean square JPEGs of it."""
    if not data:
        raise PhotoError("The file is empty. " + _ACCEPTED_HINT)
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoError(f"The photo is {len(data) / 1024 / 1024:.1f} MB; the limit is 5 MB.")
    kind = sniff_format(data)
    if kind is None:
        raise PhotoError("That file is not an image we can read. " + _ACCEPTED_HINT)
    if kind not in _ACCEPTED:
        raise PhotoError(f"{_REFUSED_NAMES[kind]} images are not supported. {_ACCEPTED_HINT}")
    image = _decode(data, kind)
    width, height = image.size
    if min(width, height) < MIN_PHOTO_SIDE:
        raise PhotoError(f"The photo is {width} by {height} pixels; it needs at least {MIN_PHOTO_SIDE} on each side.")
    square = ImageOps.fit(_to_srgb(image), (PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.LANCZOS)
    thumb = square.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    photo = _encode_jpeg(square, quality=85)
    return ProcessedPhoto(
        photo=photo,
        thumbnail=_encode_jpeg(thumb, quality=80),
        digest=hashlib.sha256(photo).hexdigest()[:20],
    )


_TOO_MANY_PIXELS = "The photo is {width} by {height} pixels; use one of at most 8 megapixels."


def _decode(data: bytes, kind: str) -> Image.Image:
    """Decode the first frame, within the pixel bounds above; any failure is the sender's
    problem, not a 500."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its pixel limit; we refuse outright.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[kind]) as probe:
                probe.verify()  # checks structure and checksums without decoding pixels
            image = Image.open(io.BytesIO(data), formats=[kind])  # lazy: reads the header only
            image.seek(0)  # animated WebP/PNG: the first frame is the photo
            if kind == "JPEG":
                # Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while keeping both sides at
                # least the stored size: a 12 MP phone photo decodes as under 1 MP.
                image.draft(None, (PHOTO_SIDE, PHOTO_SIDE))  # None keeps the mode
            if image.width * image.height > MAX_DECODED_PIXELS:
                raise PhotoError(_TOO_MANY_PIXELS.format(width=image.width, height=image.height))
            image.load()
            # Orientation lives in EXIF, which is about to be dropped: apply it to the pixels.
            return ImageOps.exif_transpose(_reduce(image))
    except PhotoError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PhotoError("The photo has far too many pixels; use one of at most 8 megapixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise PhotoError("That file is damaged or not really an image. " + _ACCEPTED_HINT) from None


def _reduce(image: Image.Image) -> Image.Image:
    """Box-average by a whole factor down to no less than twice the stored side: cheap, and it
    leaves the slow filters (colour profile, Lanczos) a small picture to work on."""
    factor = min(image.size) // (2 * PHOTO_SIDE)
    if factor < 2 or image.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return image
    return image.reduce(factor)


def _to_srgb(image: Image.Image) -> Image.Image:
    """Plain RGB in sRGB: transparency goes onto white, a wide-gamut profile is converted
    (dropping it unconverted would wash out phone photos)."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=image.mode)
            image = converted if converted is not None else image
        except (ImageCms.PyCMSError, OSError):
            log.info("photo colour profile ignored (unreadable)")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, *, quality: int) -> bytes:
    # A brand-new image carries no info dict, so nothing but pixels is written.
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def photo_variant_key(photo_key: str, variant: str) -> str:
    """Storage key (and URL path under /media/) of one variant of a stored photo."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown photo variant {variant!r}")
    return f"{photo_key}/{variant}.jpg"


def set_profile_photo(session: Session, *, profile_id: uuid.UUID, data: bytes, storage: Storage) -> str:
    """Store ``data`` as the profile's photo and return its key. The files are written first;
    the previous photo's files are deleted only once the new key is committed."""
    processed = process_photo(data)
    key = profile_photo_prefix(profile_id) + processed.digest
    try:
        storage.save(photo_variant_key(key, "512"), processed.photo, content_type="image/jpeg")
        storage.save(photo_variant_key(key, "thumb"), processed.thumbnail, content_type="image/jpeg")
    except StorageError:
        # The bucket is unreachable: nothing changed for the seller, who may simply try again.
        raise Unavailable("storage_unavailable", "Photos cannot be saved right now; try again shortly.") from None
    previous = _swap_photo_key(session, profile_id, key)
    if previous and previous != key:
        on_commit(session, lambda: delete_photo_files(storage, previous))
    return key


def remove_profile_photo(session: Session, *, profile_id: uuid.UUID, storage: Storage) -> None:
    previous = _swap_photo_key(session, profile_id, None)
    if previous:
        on_commit(session, lambda: delete_photo_files(storage, previous))


def _swap_photo_key(session: Session, profile_id: uuid.UUID, key: str | None) -> str | None:
    # Lock the row so two uploads at once each see the key they replace.
    previous = session.scalar(select(Profile.photo_key).where(Profile.id == profile_id).with_for_update())
    session.execute(update(Profile).where(Profile.id == profile_id).values(photo_key=key))
    return previous


def delete_photo_files(storage: Storage, photo_key: str) -> None:
    for variant in VARIANTS:
        storage.delete(photo_variant_key(photo_key, variant))


def profile_photo_prefix(profile_id: uuid.UUID) -> str:
    """The folder holding every photo a profile ever had (``set_profile_photo`` writes there)."""
    return f"photos/{profile_id.hex}/"


# A deletion not done this long after it was asked for (or last re-published) is published again.
DELETION_RETRY_AFTER = timedelta(minutes=15)
DELETION_BATCH = 100


def queue_photo_deletion(session: Session, profile_id: uuid.UUID, *, now: datetime) -> None:
    """The profile's row is going: record that its photos must go too (a row written in the same
    transaction) and have a task remove them after commit."""
    session.execute(
        insert(PhotoDeletion)
        .values(profile_id=profile_id, requested_at=now, next_attempt_at=now + DELETION_RETRY_AFTER)
        .on_conflict_do_nothing(index_elements=["profile_id"])
    )
    enqueue_after_commit(session, photo_tasks.delete_profile_photos, str(profile_id))


def delete_removed_profile_photos(
    session: Session, profile_id: uuid.UUID, *, storage: Storage, now: datetime | None = None
) -> int:
    """Delete every stored photo of a profile whose row is gone (its account was deleted),
    leftovers of earlier replacements included; returns how many files went, and marks the
    deletion done. A profile that still exists keeps its files, so a stray call cannot delete a
    live photo. Repeat-safe."""
    if session.get(Profile, profile_id) is not None:
        log.warning("photos kept: the profile still exists", extra={"profile_id": str(profile_id)})
        return 0
    removed = storage.delete_prefix(profile_photo_prefix(profile_id))
    session.execute(
        update(PhotoDeletion)
        .where(PhotoDeletion.profile_id == profile_id, PhotoDeletion.done_at.is_(None))
        .values(done_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return removed


def _deletion_due(now: Moment) -> Select[tuple[uuid.UUID]]:
    return select(PhotoDeletion.profile_id).where(PhotoDeletion.done_at.is_(None), PhotoDeletion.next_attempt_at <= now)


@looks_for(lambda now: _deletion_due(now).exists())
def requeue_photo_deletions(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: publish again the photo deletions still undone (the broker was down at the
    account's deletion, or the bucket for longer than the task's retries), once per
    DELETION_RETRY_AFTER each."""
    due = list(
        session.scalars(
            _deletion_due(now)
            .order_by(PhotoDeletion.next_attempt_at)
            .limit(DELETION_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    if due:
        session.execute(
            update(PhotoDeletion)
            .where(PhotoDeletion.profile_id.in_(due))
            .values(next_attempt_at=now + DELETION_RETRY_AFTER)
            .execution_options(synchronize_session=False)
        )
    for profile_id in due:
        enqueue_after_commit(session, photo_tasks.delete_profile_photos, str(profile_id))
    return {"photo_deletions_requeued": len(due)}

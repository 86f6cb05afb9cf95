import io

import pytest
from PIL import Image

from app.integrations.storage import FileNotStored, LocalStorage
from app.models import Profile
from app.services.photos import (
    MAX_PHOTO_BYTES,
    PHOTO_SIDE,
    THUMB_SIDE,
    PhotoError,
    delete_removed_profile_photos,
    photo_variant_key,
    process_photo,
    profile_photo_prefix,
    remove_profile_photo,
    set_profile_photo,
    sniff_format,
)
from tests.factories import ProfileFactory

EXIF_MAKE, EXIF_ARTIST, EXIF_ORIENTATION, GPS_IFD = 0x010F, 0x013B, 0x0112, 0x8825


def make_image(fmt: str = "JPEG", size: tuple[int, int] = (300, 200), mode: str = "RGB", **save_args) -> bytes:
    image = Image.new("RGB", size)
    # A gradient rather than a flat colour, so encoders have real work to do.
    image.putdata([((x * 7) % 256, (y * 5) % 256, 128) for y in range(size[1]) for x in range(size[0])])
    image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt, **save_args)
    return out.getvalue()


def exif_with_secrets(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[EXIF_MAKE] = "SecretCam"
    exif[EXIF_ARTIST] = "Jane Private"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (51.0, 30.0, 0.0)
    if orientation:
        exif[EXIF_ORIENTATION] = orientation
    return exif


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class TestProcessPhoto:
    @pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
    def test_accepted_formats_become_square_jpegs(self, fmt: str) -> None:
        result = process_photo(make_image(fmt))
        photo, thumb = decode(result.photo), decode(result.thumbnail)
        assert (photo.format, photo.size) == ("JPEG", (PHOTO_SIDE, PHOTO_SIDE))
        assert (thumb.format, thumb.size) == ("JPEG", (THUMB_SIDE, THUMB_SIDE))
        assert len(result.digest) == 20

    def test_exif_and_gps_are_stripped(self) -> None:
        original = make_image("JPEG", exif=exif_with_secrets().tobytes())
        assert b"SecretCam" in original and decode(original).getexif()  # the fixture really has EXIF
        result = process_photo(original)
        for data in (result.photo, result.thumbnail):
            assert b"SecretCam" not in data and b"Jane Private" not in data and b"Exif" not in data
            image = decode(data)
            assert not image.getexif()
            assert "exif" not in image.info and "icc_profile" not in image.info

    def test_png_text_chunks_are_stripped(self) -> None:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Author", "Jane Private")
        info.add_text("Location", "12 Secret Street")
        result = process_photo(make_image("PNG", pnginfo=info))
        assert b"Jane Private" not in result.photo and b"Secret Street" not in result.photo

    def test_orientation_is_applied_before_metadata_goes(self) -> None:
        # Landscape: red on the left, blue on the right; EXIF 6 says "rotate 90° clockwise".
        image = Image.new("RGB", (400, 200), "red")
        image.paste(Image.new("RGB", (200, 200), "blue"), (200, 0))
        out = io.BytesIO()
        image.save(out, format="JPEG", exif=exif_with_secrets(orientation=6).tobytes())
        photo = decode(process_photo(out.getvalue()).photo)
        top, bottom = photo.getpixel((256, 100)), photo.getpixel((256, 412))
        assert top[0] > 200 and top[2] < 60  # red on top once upright
        assert bottom[2] > 200 and bottom[0] < 60

    def test_transparency_is_flattened_onto_white(self) -> None:
        clear = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
        out = io.BytesIO()
        clear.save(out, format="PNG")
        assert decode(process_photo(out.getvalue()).photo).getpixel((10, 10)) >= (250, 250, 250)

    def test_oversized_file_is_refused_before_decoding(self) -> None:
        data = make_image("JPEG") + b"\0" * MAX_PHOTO_BYTES
        with pytest.raises(PhotoError, match="limit is 5 MB"):
            process_photo(data)

    def test_exactly_five_megabytes_is_allowed_by_size(self) -> None:
        padded = make_image("PNG")
        # PNG ignores bytes after IEND, so this is a valid image of exactly the limit.
        padded += b"\0" * (MAX_PHOTO_BYTES - len(padded))
        assert len(padded) == MAX_PHOTO_BYTES
        assert decode(process_photo(padded).photo).size == (PHOTO_SIDE, PHOTO_SIDE)

    def test_text_renamed_to_jpg_is_refused(self) -> None:
        with pytest.raises(PhotoError, match="not an image"):
            process_photo(b"I am a text file pretending to be holiday.jpg\n" * 10)

    def test_html_posing_as_image_is_refused(self) -> None:
        with pytest.raises(PhotoError, match="not an image"):
            process_photo(b"<html><script>alert(1)</script></html>")

    def test_gif_is_refused_by_name(self) -> None:
        with pytest.raises(PhotoError, match="GIF images are not supported"):
            process_photo(make_image("GIF", mode="P"))

    def test_bmp_is_refused_by_name(self) -> None:
        with pytest.raises(PhotoError, match="BMP images are not supported"):
            process_photo(make_image("BMP"))

    def test_jpeg_header_with_garbage_is_refused(self) -> None:
        with pytest.raises(PhotoError, match="damaged"):
            process_photo(b"\xff\xd8\xff\xe0" + b"garbage" * 100)

    def test_truncated_image_is_refused(self) -> None:
        data = make_image("PNG", size=(400, 400))
        with pytest.raises(PhotoError, match="damaged"):
            process_photo(data[: len(data) // 2])

    def test_empty_file_is_refused(self) -> None:
        with pytest.raises(PhotoError, match="empty"):
            process_photo(b"")

    def test_tiny_image_is_refused(self) -> None:
        with pytest.raises(PhotoError, match="at least 64"):
            process_photo(make_image("PNG", size=(40, 300)))

    def test_pixel_bomb_is_refused_without_decoding(self) -> None:
        # A PNG header claiming 20000 x 20000 pixels (400 MP) in a few hundred bytes.
        bomb = Image.new("1", (20000, 20000))
        out = io.BytesIO()
        bomb.save(out, format="PNG")
        assert len(out.getvalue()) < MAX_PHOTO_BYTES
        with pytest.raises(PhotoError, match="too many pixels"):
            process_photo(out.getvalue())

    def test_same_picture_same_digest(self) -> None:
        data = make_image("PNG")
        assert process_photo(data).digest == process_photo(data).digest
        assert process_photo(make_image("PNG", size=(200, 300))).digest != process_photo(data).digest


class TestSniffFormat:
    @pytest.mark.parametrize(
        ("head", "name"),
        [
            (b"\xff\xd8\xff\xe0....", "JPEG"),
            (b"\x89PNG\r\n\x1a\n....", "PNG"),
            (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
            (b"GIF89a....", "GIF"),
            (b"\x00\x00\x00\x18ftypheic....", "HEIC"),
            (b"hello", None),
        ],
    )
    def test_sniffs(self, head: bytes, name: str | None) -> None:
        assert sniff_format(head) == name


class TestSetProfilePhoto:
    def test_stores_both_variants_and_points_the_profile_at_them(self, db_session, tmp_path) -> None:
        storage = LocalStorage(tmp_path)
        profile = ProfileFactory()
        key = set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        assert key.startswith(f"photos/{profile.id.hex}/")
        assert decode(storage.open(photo_variant_key(key, "512"))).size == (PHOTO_SIDE, PHOTO_SIDE)
        assert decode(storage.open(photo_variant_key(key, "thumb"))).size == (THUMB_SIDE, THUMB_SIDE)
        db_session.expire_all()
        assert db_session.get(Profile, profile.id).photo_key == key

    def test_refused_upload_stores_nothing(self, db_session, tmp_path) -> None:
        profile = ProfileFactory()
        with pytest.raises(PhotoError):
            set_profile_photo(db_session, profile_id=profile.id, data=b"not an image", storage=LocalStorage(tmp_path))
        assert list(tmp_path.iterdir()) == []
        db_session.expire_all()
        assert db_session.get(Profile, profile.id).photo_key is None

    def test_old_files_are_deleted_only_after_commit(self, db_session, tmp_path) -> None:
        storage = LocalStorage(tmp_path)
        profile = ProfileFactory()
        first = set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        db_session.commit()
        second = set_profile_photo(db_session, profile_id=profile.id, data=make_image("JPEG"), storage=storage)
        assert first != second
        assert storage.open(photo_variant_key(first, "512"))  # still there until the commit
        db_session.commit()
        with pytest.raises(FileNotStored):
            storage.open(photo_variant_key(first, "512"))
        with pytest.raises(FileNotStored):
            storage.open(photo_variant_key(first, "thumb"))
        assert storage.open(photo_variant_key(second, "512"))

    def test_rollback_keeps_the_old_photo(self, db_session, tmp_path) -> None:
        storage = LocalStorage(tmp_path)
        profile = ProfileFactory()
        first = set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        db_session.commit()
        set_profile_photo(db_session, profile_id=profile.id, data=make_image("JPEG"), storage=storage)
        db_session.rollback()
        assert storage.open(photo_variant_key(first, "512"))
        assert db_session.get(Profile, profile.id).photo_key == first

    def test_remove(self, db_session, tmp_path) -> None:
        storage = LocalStorage(tmp_path)
        profile = ProfileFactory()
        key = set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        db_session.commit()
        remove_profile_photo(db_session, profile_id=profile.id, storage=storage)
        db_session.commit()
        assert db_session.get(Profile, profile.id).photo_key is None
        with pytest.raises(FileNotStored):
            storage.open(photo_variant_key(key, "512"))


class TestDeleteRemovedProfilePhotos:
    def test_a_live_profile_keeps_its_files(self, db_session, tmp_path) -> None:
        storage = LocalStorage(tmp_path)
        profile = ProfileFactory()
        key = set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        assert delete_removed_profile_photos(db_session, profile.id, storage=storage) == 0
        assert storage.open(photo_variant_key(key, "512"))

    def test_a_removed_profile_loses_every_file_it_had(self, db_session, tmp_path) -> None:
        storage = LocalStorage(tmp_path)
        profile, other = ProfileFactory(), ProfileFactory()
        set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        kept = set_profile_photo(db_session, profile_id=other.id, data=make_image("PNG"), storage=storage)
        db_session.delete(profile)
        db_session.flush()
        assert delete_removed_profile_photos(db_session, profile.id, storage=storage) == 2
        assert not (tmp_path / profile_photo_prefix(profile.id)).exists()
        assert storage.open(photo_variant_key(kept, "512"))


class TestPhotoDeletionIsDurable:
    """A deleted profile's photos are a row to do, not only a message: a broker down at the
    account's deletion delays their removal and never loses it."""

    def test_the_sweep_publishes_an_undone_deletion_until_it_is_done(
        self, db_session, tmp_path, settings, enqueued
    ) -> None:  # type: ignore[no-untyped-def]
        from datetime import timedelta

        from app.db import utcnow
        from app.models import PhotoDeletion
        from app.services.photos import DELETION_RETRY_AFTER, queue_photo_deletion, requeue_photo_deletions
        from tasks.photos import delete_profile_photos

        storage = LocalStorage(tmp_path)
        profile = ProfileFactory()
        set_profile_photo(db_session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
        db_session.delete(profile)
        now = utcnow()
        queue_photo_deletion(db_session, profile.id, now=now)
        db_session.commit()
        enqueued.clear()  # the message of the deletion itself was lost with the broker

        assert requeue_photo_deletions(db_session, now + timedelta(minutes=1), settings) == {
            "photo_deletions_requeued": 0
        }
        later = now + DELETION_RETRY_AFTER
        assert requeue_photo_deletions(db_session, later, settings) == {"photo_deletions_requeued": 1}
        db_session.commit()
        assert enqueued == [(delete_profile_photos.name, (str(profile.id),), {})]
        assert requeue_photo_deletions(db_session, later, settings) == {"photo_deletions_requeued": 0}  # leased

        assert delete_removed_profile_photos(db_session, profile.id, storage=storage, now=later) == 2
        assert db_session.get(PhotoDeletion, profile.id).done_at == later
        again = later + 2 * DELETION_RETRY_AFTER
        assert requeue_photo_deletions(db_session, again, settings) == {"photo_deletions_requeued": 0}


class TestDecodingIsBounded:
    """Issue 16, finding 4: the size in the header is checked before a pixel is decoded."""

    @staticmethod
    def flat_png(width: int, height: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="PNG", optimize=True)
        return out.getvalue()

    def test_a_flat_6300_square_png_is_refused_before_decoding(self, monkeypatch) -> None:
        from PIL import ImageFile

        loads: list[tuple[int, int]] = []
        real_load = ImageFile.ImageFile.load
        monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size) or real_load(self))
        data = self.flat_png(6300, 6300)
        assert len(data) < 200_000
        with pytest.raises(PhotoError, match="6300 by 6300 pixels"):
            process_photo(data)
        assert loads == []

    def test_a_png_just_inside_the_bound_is_accepted(self) -> None:
        assert process_photo(self.flat_png(4096, 2048)).photo

    def test_a_large_jpeg_is_decoded_at_reduced_scale(self, monkeypatch) -> None:
        from PIL import ImageFile

        loaded: list[tuple[int, int]] = []
        real_load = ImageFile.ImageFile.load
        monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(self.size) or real_load(self))
        photo = process_photo(make_image("JPEG", size=(4032, 3024)))
        assert Image.open(io.BytesIO(photo.photo)).size == (512, 512)
        assert loaded and all(w * h <= 1_000_000 for w, h in loaded)  # 1/4 scale: 1008 x 756

    def test_pillows_own_limit_matches(self) -> None:
        from app.services.photos import MAX_HEADER_PIXELS

        assert Image.MAX_IMAGE_PIXELS == MAX_HEADER_PIXELS

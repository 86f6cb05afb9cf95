"""The seller's profile: the ``/profile`` page, ``GET|POST /api/profile``, photo upload and the
photo files themselves under ``/media/``."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge

from app.db import db
from app.errors import ApiError, error_response, refusal_status
from app.extensions import limiter
from app.formats import currency_exponent, iso
from app.integrations.storage import FileNotStored, Storage, StorageError
from app.models import Profile, User
from app.refusals import Refusal, Unavailable
from app.services.photos import photo_variant_key, remove_profile_photo, set_profile_photo
from app.services.profiles import (
    ProfileChanges,
    get_profile,
    save_profile,
    seller_unavailable_reason,
    set_paused,
)
from app.web.auth import signed_in_user
from app.web.forms.profile import EmptyForm, PauseForm, PhotoForm, ProfileForm

bp = Blueprint("profile", __name__)

PHOTO_CACHE_CONTROL = "public, max-age=31536000, immutable"
_MEDIA_KEY = re.compile(r"^photos/[0-9a-f]{32}/(?P<digest>[0-9a-f]{20})/(512|thumb)\.jpg$")
_TOO_LARGE = "The photo is larger than 5 MB. Choose a smaller one."
# Service field names → the JSON API's camelCase keys and the page form's fields.
_API_FIELDS = {"display_name": "displayName", "slug": "slug", "bio": "bio", "price_cents": "priceCents"}
_FORM_FIELDS = {"display_name": "display_name", "slug": "slug", "bio": "bio", "price_cents": "price"}


def _uploader() -> str:
    """The seller, whichever address they upload from (anonymous posts are refused anyway)."""
    return f"user:{current_user.id}" if current_user.is_authenticated else request.remote_addr or "unknown"


# Each upload decodes an image: a few a minute is plenty for a person choosing a photo. The page
# and the API share both budgets; the per-address one stops many accounts on one machine.
photo_limit_per_seller = limiter.shared_limit(
    "5/minute;30/hour", scope="photo-seller", key_func=_uploader, methods=["POST"]
)
photo_limit_per_address = limiter.shared_limit("10/minute;60/hour", scope="photo-address", methods=["POST"])


@bp.after_request
def no_store(response: Response) -> Response:
    # The profile page and API carry a CSRF token and account details; photos set their own.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def get_storage() -> Storage:
    storage: Storage = current_app.extensions["storage"]
    return storage


@bp.app_template_global("photo_url")
def photo_url(photo_key: str | None, variant: str = "512", *, absolute: bool = False) -> str | None:
    """URL of a stored photo; it changes whenever the photo does, so it can be cached forever."""
    if not photo_key:
        return None
    path = url_for("profile.media", key=photo_variant_key(photo_key, variant))
    return current_app.extensions["settings"].app_url + path if absolute else path


def _user() -> User:
    return signed_in_user()


def api_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            raise ApiError(401, "Log in first.")
        return view(*args, **kwargs)

    return wrapper


# --- Page ------------------------------------------------------------------------------------


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile_page() -> ResponseReturnValue:
    profile = get_profile(db.session, _user().id)
    form = ProfileForm(obj=_FormDefaults(profile))
    if not form.validate_on_submit():
        return _render_profile(profile, form, status=422 if form.is_submitted() else 200)
    settings = current_app.extensions["settings"]
    currency = profile.currency if profile else settings.currency
    changes = ProfileChanges(
        display_name=form.display_name.data,
        slug=form.slug.data or "",
        bio=form.bio.data or "",
        price_cents=int((form.price.data * 10 ** currency_exponent(currency)).to_integral_value()),
        paused=form.paused.data,
    )
    try:
        save_profile(db.session, user_id=_user().id, changes=changes, currency=settings.currency)
    except Refusal as refusal:
        db.session.rollback()
        for name, message in refusal.fields.items():
            getattr(form, _FORM_FIELDS[name]).errors.append(message)
        return _render_profile(get_profile(db.session, _user().id), form, status=refusal_status(refusal))
    db.session.commit()
    flash("Profile saved.", "success")
    return redirect(url_for("profile.profile_page"), 303)


class _FormDefaults:
    """The profile's values in the page form's units (a new profile starts at the default price)."""

    def __init__(self, profile: Profile | None):
        self.display_name = profile.display_name if profile else ""
        self.slug = profile.slug if profile else ""
        self.bio = profile.bio if profile else ""
        cents, currency = (profile.price_cents, profile.currency) if profile else (1000, "usd")
        self.price = Decimal(cents) / 10 ** currency_exponent(currency)
        self.paused = profile.paused if profile else False


def _render_profile(
    profile: Profile | None, form: ProfileForm, *, photo_form: PhotoForm | None = None, status: int = 200
) -> Response:
    settings = current_app.extensions["settings"]
    html = render_template(
        "profile.html",
        profile=profile,
        form=form,
        photo_form=photo_form or PhotoForm(formdata=None),
        currency=(profile.currency if profile else settings.currency).upper(),
        app_url=settings.app_url,
        status=seller_unavailable_reason(_user(), profile) if profile else None,
    )
    return make_response(html, status)


@bp.post("/profile/photo")
@login_required
@photo_limit_per_seller
@photo_limit_per_address
def upload_photo_page() -> ResponseReturnValue:
    profile = get_profile(db.session, _user().id)
    photo_form = PhotoForm()
    if profile is None:
        photo_form.photo.errors = ["Save your profile first, then add a photo."]
    elif photo_form.validate_on_submit():
        try:
            set_profile_photo(
                db.session, profile_id=profile.id, data=photo_form.photo.data.read(), storage=get_storage()
            )
        except Refusal as refusal:
            photo_form.photo.errors = [refusal.message]
        else:
            db.session.commit()
            flash("Photo updated.", "success")
            return redirect(url_for("profile.profile_page"), 303)
    return _render_profile(
        profile, ProfileForm(formdata=None, obj=_FormDefaults(profile)), photo_form=photo_form, status=422
    )


@bp.post("/profile/photo/delete")
@login_required
def remove_photo_page() -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    profile = get_profile(db.session, _user().id)
    if profile is not None:
        remove_profile_photo(db.session, profile_id=profile.id, storage=get_storage())
        db.session.commit()
        flash("Photo removed.", "success")
    return redirect(url_for("profile.profile_page"), 303)


@bp.post("/profile/pause")
@login_required
def pause_page() -> ResponseReturnValue:
    form = PauseForm()
    if not form.validate_on_submit() or form.paused.data not in ("1", "0"):
        abort(400)
    if set_paused(db.session, user_id=_user().id, paused=form.paused.data == "1"):
        db.session.commit()
        flash("You are not taking calls now." if form.paused.data == "1" else "You are taking calls again.", "success")
    return redirect("/dashboard", 303)


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    if request.path.startswith("/api/"):
        return error_response(413, "too_large", _TOO_LARGE, {"photo": _TOO_LARGE})
    profile = get_profile(db.session, _user().id) if current_user.is_authenticated else None
    photo_form = PhotoForm(formdata=None)
    photo_form.photo.errors = [_TOO_LARGE]
    form = ProfileForm(formdata=None, obj=_FormDefaults(profile))
    return _render_profile(profile, form, photo_form=photo_form, status=413)


# --- JSON API --------------------------------------------------------------------------------


def profile_json(profile: Profile, user: User) -> dict[str, object]:
    settings = current_app.extensions["settings"]
    return {
        "displayName": profile.display_name,
        "slug": profile.slug,
        "bio": profile.bio,
        "priceCents": profile.price_cents,
        "currency": profile.currency,
        "paused": profile.paused,
        "status": seller_unavailable_reason(user, profile) or "live",
        "paywallUrl": f"{settings.app_url}/u/{profile.slug}",
        "photoUrl": photo_url(profile.photo_key, absolute=True),
        "thumbnailUrl": photo_url(profile.photo_key, "thumb", absolute=True),
        "updatedAt": iso(profile.updated_at),
    }


@bp.get("/api/profile")
@api_login_required
def api_get_profile() -> ResponseReturnValue:
    profile = get_profile(db.session, _user().id)
    if profile is None:
        raise ApiError(404, "You have not set up a profile yet; POST /api/profile to create it.")
    return jsonify(profile_json(profile, _user()))


@bp.post("/api/profile")
@api_login_required
def api_save_profile() -> ResponseReturnValue:
    changes = _parse_profile_json(request.get_json(silent=True))
    existed = get_profile(db.session, _user().id) is not None
    try:
        profile = save_profile(
            db.session, user_id=_user().id, changes=changes, currency=current_app.extensions["settings"].currency
        )
    except Refusal as refusal:
        # The API's inputs are camelCase; the service names the model's fields.
        refusal.fields = {_API_FIELDS[name]: message for name, message in refusal.fields.items()}
        raise
    db.session.commit()
    return jsonify(profile_json(profile, _user())), 200 if existed else 201


_JSON_TYPES: dict[str, tuple[type, str]] = {
    "displayName": (str, "a string"),
    "slug": (str, "a string"),
    "bio": (str, "a string"),
    "priceCents": (int, "a whole number of cents"),
    "paused": (bool, "true or false"),
}


def _parse_profile_json(body: object) -> ProfileChanges:
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    errors = {}
    for key, (kind, wording) in _JSON_TYPES.items():
        value = body.get(key)
        # bool is a subclass of int: true is not a price.
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            errors[key] = f"Must be {wording}."
    if errors:
        raise ApiError(422, "Some fields have the wrong type.", fields=errors)
    return ProfileChanges(
        display_name=body.get("displayName"),
        slug=body.get("slug"),
        bio=body.get("bio"),
        price_cents=body.get("priceCents"),
        paused=body.get("paused"),
    )


@bp.post("/api/profile/photo")
@api_login_required
@photo_limit_per_seller
@photo_limit_per_address
def api_upload_photo() -> ResponseReturnValue:
    profile = get_profile(db.session, _user().id)
    if profile is None:
        raise ApiError(409, "Create your profile before adding a photo.", code="no_profile")
    upload = request.files.get("photo")
    if upload is None:
        raise ApiError(422, "Send the photo as multipart form field 'photo'.", fields={"photo": "Required."})
    set_profile_photo(db.session, profile_id=profile.id, data=upload.read(), storage=get_storage())
    db.session.commit()
    return jsonify(profile_json(profile, _user()))


@bp.delete("/api/profile/photo")
@api_login_required
def api_remove_photo() -> ResponseReturnValue:
    profile = get_profile(db.session, _user().id)
    if profile is None:
        raise ApiError(404, "You have not set up a profile yet.")
    remove_profile_photo(db.session, profile_id=profile.id, storage=get_storage())
    db.session.commit()
    return jsonify(profile_json(profile, _user()))


# --- Photo files -----------------------------------------------------------------------------


@bp.get("/media/<path:key>")
def media(key: str) -> ResponseReturnValue:
    """A photo, read from storage by this app (on local disk or S3 alike) rather than by redirect
    to a presigned bucket URL: the page's CSP keeps ``img-src 'self'``, the URL in ``og:image``
    never expires, and the bytes are cached for a year by browsers and any CDN in front."""
    match = _MEDIA_KEY.match(key)
    if not match:
        abort(404)
    # The key holds a digest of the picture, so the digest is a strong validator: a revalidation
    # is answered without reading storage at all.
    etag = match.group("digest")
    if request.if_none_match.contains(etag):
        response = make_response("", 304)
    else:
        try:
            response = make_response(get_storage().open(key))
        except FileNotStored:
            abort(404)
        except StorageError:
            raise Unavailable("storage_unavailable", "Photos cannot be loaded right now; try again shortly.") from None
        response.headers["Content-Type"] = "image/jpeg"
    response.set_etag(etag)
    # A new photo is a new URL, so this one never changes.
    response.headers["Cache-Control"] = PHOTO_CACHE_CONTROL
    return response

"""Accounts on the web: sign-up, log-in, log-out, password reset and email verification, as
pages and as the JSON API under ``/api/auth/``; the session loader and the admin guard.

Rate limits (per client IP unless said otherwise; a page and its JSON twin share one budget):
log-in 10/minute and 50/hour, sign-up 10/hour, forgot 5/minute and 20/hour, reset 10/hour,
resend verification 3/hour per account. Only POSTs count.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf

from app.config import Settings
from app.db import db, utcnow
from app.errors import ApiError, refusal_status, wants_json
from app.extensions import limiter, login_manager, redis_client
from app.models import User
from app.refusals import Refusal
from app.services import accounts, sessions
from app.services.lockouts import UnknownEmailLockouts
from app.web.forms.auth import ForgotForm, LoginForm, ResetForm, SignupForm

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"

AFTER_SIGNUP = "/profile"
AFTER_LOGIN = "/dashboard"
FORGOT_ANSWER = (
    "If an account exists for that email, we sent it a link to choose a new password. It works for one hour."
)
# Sign-up says the same whether or not the address has an account (issue 16): the difference is
# only in what that address receives.
SIGNUP_ANSWER = "Check your inbox: we sent a link to that address. Open it to confirm your email and finish signing up."
TOO_MANY = "Too many attempts from your network. Please wait a little and try again."


def _resend_key() -> str:
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return request.remote_addr or "unknown"


login_limit = limiter.shared_limit("10/minute;50/hour", scope="auth-login", methods=["POST"], error_message=TOO_MANY)
signup_limit = limiter.shared_limit("10/hour", scope="auth-signup", methods=["POST"], error_message=TOO_MANY)
forgot_limit = limiter.shared_limit("5/minute;20/hour", scope="auth-forgot", methods=["POST"], error_message=TOO_MANY)
reset_limit = limiter.shared_limit("10/hour", scope="auth-reset", methods=["POST"], error_message=TOO_MANY)
resend_limit = limiter.limit(
    "3/hour",
    key_func=_resend_key,
    methods=["POST"],
    error_message="We already sent several links. Please wait an hour.",
)


@login_manager.user_loader
def load_user(session_token: str) -> User | None:
    """The cookie holds ``<user id>:<session version>``; an old version means that session was
    ended (password reset, deletion) and is refused."""
    user_id, _, version = session_token.partition(":")
    try:
        user = db.session.get(User, uuid.UUID(user_id))
    except ValueError:
        return None
    if user is None or not user.is_active or str(user.session_version) != version:
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized() -> ResponseReturnValue:
    if wants_json():
        raise ApiError(401, "Log in first.", code="unauthorized")
    flash("Log in to continue.", "info")
    target = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
    return redirect(url_for("auth.login", next=target))


View = TypeVar("View", bound=Callable[..., Any])


def signed_in_user() -> User:
    """The logged-in user, as the model (Flask-Login hands out a proxy)."""
    user: User = current_user._get_current_object()
    return user


def signed_in_user_id() -> uuid.UUID:
    return signed_in_user().id


def admin_required(view: View) -> View:
    """Only admins get through: anonymous visitors are sent to log in (401 on the API), everyone
    else gets 403."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_admin:
            raise ApiError(403, "This area is for ChatLink admins only.", code="forbidden")
        return view(*args, **kwargs)

    protected: View = cast(View, guarded)  # functools.wraps keeps the signature mypy cannot see
    return protected


@bp.after_request
def no_store(response: Response) -> Response:
    # These pages carry CSRF tokens, reset tokens and account details: keep them out of caches.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- Helpers shared by pages and API --------------------------------------------------------


def safe_next(target: str | None, default: str = AFTER_LOGIN) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(char) < 32 for char in target) or urlsplit(target).netloc:
        return default
    return target


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _links() -> dict[str, str]:
    settings = _settings()
    return {"app_url": settings.app_url, "secret_key": settings.secret_key}


def _unknown_email_lockouts() -> UnknownEmailLockouts:
    return UnknownEmailLockouts(redis_client(), f"chatlink:{_settings().celery_queue}:lockout")


def _fresh_session() -> None:
    """Empty the session but for its CSRF secret. The secret belongs to the browser (or a script's
    cookie jar), not to the account, so the token a client fetched once from ``/api/auth/csrf``
    keeps working across log-in and log-out. Keeping it opens no hole: a cookie planted by an
    attacker cannot be used over HTTPS, where Flask-WTF also requires a same-origin Referer."""
    key = current_app.config["WTF_CSRF_FIELD_NAME"]
    secret = session.get(key)
    session.clear()
    if secret is not None:
        session[key] = secret


def _start_session(user: User) -> None:
    """A fresh session for the logged-in user: nothing else from before log-in survives (no fixation)."""
    _fresh_session()
    login_user(user)


def _end_session() -> None:
    logout_user()
    _fresh_session()


def _log_in(email: str, password: str) -> User:
    try:
        return accounts.log_in(db.session, email, password, now=utcnow(), unknown=_unknown_email_lockouts())
    except Refusal:
        db.session.commit()  # keep the failure count and the audit event
        raise


def _viewer_id() -> uuid.UUID | None:
    return current_user.id if current_user.is_authenticated else None


def _after_reset(user: User, viewer_id: uuid.UUID | None) -> bool:
    """The reset ended every session of ``user``; keep this one if it was theirs. ``viewer_id``
    is read before the reset, which makes the current session look stale."""
    if viewer_id == user.id:
        _start_session(user)
        return True
    return False


def user_json(user: User) -> dict[str, object]:
    return {
        "id": str(user.id),
        "email": user.email,
        "role": user.role.value,
        "emailVerified": user.email_verified_at is not None,
    }


# --- Pages ----------------------------------------------------------------------------------


def _page(template: str, form: FlaskForm, status: int = 200, **context: Any) -> tuple[str, int]:
    if form.errors and status == 200:
        status = 422
    return render_template(template, form=form, **context), status


def _show_error(form: FlaskForm, refusal: Refusal) -> None:
    """The refusal's message beside the input at fault, or above the form."""
    fields = [getattr(form, name, None) for name in refusal.fields]
    for field in fields:
        if field is not None:
            field.errors.append(refusal.message)
    if not any(fields):
        form.form_errors.append(refusal.message)


@bp.route("/signup", methods=["GET", "POST"])
@signup_limit
def signup() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(AFTER_LOGIN)
    form = SignupForm()
    if form.validate_on_submit():
        try:
            accounts.sign_up(db.session, form.email.data or "", form.password.data or "", now=utcnow(), **_links())
        except Refusal as refusal:
            _show_error(form, refusal)
            return _page("auth/signup.html", form, status=refusal_status(refusal))
        db.session.commit()
        return redirect(url_for("auth.signup", sent=1), 303)
    return _page("auth/signup.html", form, sent=request.args.get("sent") == "1", answer=SIGNUP_ANSWER)


@bp.route("/login", methods=["GET", "POST"])
@login_limit
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"), default="")
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            user = _log_in(form.email.data or "", form.password.data or "")
        except accounts.AccountLocked as locked:
            form.form_errors.append(locked.message)
            headers["Retry-After"] = str(locked.retry_after)
        except Refusal as refusal:
            form.form_errors.append(refusal.message)
        else:
            db.session.commit()
            _start_session(user)
            # An admin's home is the admin area, not a seller dashboard they have no use for.
            return redirect(safe_next(form.next.data, default="/admin" if user.is_admin else AFTER_LOGIN), 303)
    body, status = _page("auth/login.html", form, status=429 if headers else 200)
    return body, status, headers


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    if current_user.is_authenticated:
        sessions.log_out(db.session, current_user.id)
        db.session.commit()
    _end_session()
    flash("You are logged out.", "success")
    return redirect(url_for("pages.landing"), 303)


@bp.route("/forgot", methods=["GET", "POST"])
@forgot_limit
def forgot() -> ResponseReturnValue:
    form = ForgotForm()
    if form.validate_on_submit():
        accounts.request_password_reset(db.session, form.email.data or "", now=utcnow(), app_url=_settings().app_url)
        db.session.commit()
        return redirect(url_for("auth.forgot", sent=1), 303)
    return _page("auth/forgot.html", form, sent=request.args.get("sent") == "1", answer=FORGOT_ANSWER)


@bp.route("/reset/<token>", methods=["GET", "POST"])
@reset_limit
def reset(token: str) -> ResponseReturnValue:
    # The token is in this page's address: never pass it on as a referrer.
    private = {"Referrer-Policy": "no-referrer"}
    form = ResetForm()
    viewer_id = _viewer_id()
    try:
        if form.validate_on_submit():
            user = accounts.reset_password(db.session, token, form.password.data or "", now=utcnow())
            db.session.commit()
            if _after_reset(user, viewer_id):
                flash("Your password is changed. Every other session was logged out.", "success")
                return redirect(AFTER_LOGIN, 303)
            flash("Your password is changed. Log in with the new one.", "success")
            return redirect(url_for("auth.login"), 303)
        if request.method == "GET":
            accounts.check_reset_token(db.session, token, now=utcnow())
    except accounts.InvalidToken as invalid:
        return render_template("auth/reset_invalid.html", message=invalid.message), 400, private
    except Refusal as refusal:
        _show_error(form, refusal)
    return *_page("auth/reset.html", form), private


@bp.get("/verify-email/<token>")
def verify_email(token: str) -> ResponseReturnValue:
    viewer_id = _viewer_id()
    try:
        user, first_time = accounts.confirm_email(
            db.session, token, secret_key=_settings().secret_key, now=utcnow(), current_user_id=viewer_id
        )
    except Refusal as refusal:
        page = render_template("auth/verify_result.html", ok=False, message=refusal.message)
        return page, refusal_status(refusal)
    db.session.commit()
    if first_time and viewer_id is None:
        # The link from sign-up finishes the sign-up: the address is proven, the seller is in.
        _start_session(user)
        flash("Welcome to ChatLink! Your email is confirmed. Set up your page.", "success")
        return redirect(AFTER_SIGNUP, 303)
    return render_template("auth/verify_result.html", ok=True, message="Your email is confirmed. Thank you!")


@bp.post("/verify-email/resend")
@login_required
@resend_limit
def resend_verification() -> ResponseReturnValue:
    if accounts.resend_verification(db.session, signed_in_user(), **_links()):
        flash(f"We sent a new confirmation link to {current_user.email}.", "success")
    else:
        flash("Your email is already confirmed.", "info")
    db.session.commit()
    return redirect(safe_next(request.form.get("next")), 303)


# --- JSON API -------------------------------------------------------------------------------


def _json_fields(*names: str) -> list[str]:
    """The named string fields of the JSON body, in order; 400/422 if the body is not usable."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object with Content-Type: application/json.")
    missing = {
        name: "This field is required." for name in names if not isinstance(body.get(name), str) or not body[name]
    }
    if missing:
        raise ApiError(422, "Some fields are missing.", fields=missing)
    return [body[name] for name in names]


@bp.get("/api/auth/csrf")
def api_csrf() -> ResponseReturnValue:
    return {"csrfToken": generate_csrf()}


@bp.post("/api/auth/signup")
@signup_limit
def api_signup() -> ResponseReturnValue:
    email, password = _json_fields("email", "password")
    accounts.sign_up(db.session, email, password, now=utcnow(), **_links())
    db.session.commit()
    return {"message": SIGNUP_ANSWER}, 202


@bp.post("/api/auth/login")
@login_limit
def api_login() -> ResponseReturnValue:
    email, password = _json_fields("email", "password")
    user = _log_in(email, password)
    db.session.commit()
    _start_session(user)
    return {"user": user_json(user), "csrfToken": generate_csrf()}


@bp.post("/api/auth/logout")
def api_logout() -> ResponseReturnValue:
    if current_user.is_authenticated:
        sessions.log_out(db.session, current_user.id)
        db.session.commit()
    _end_session()
    return {"loggedOut": True}


@bp.post("/api/auth/forgot")
@forgot_limit
def api_forgot() -> ResponseReturnValue:
    (email,) = _json_fields("email")
    accounts.request_password_reset(db.session, email, now=utcnow(), app_url=_settings().app_url)
    db.session.commit()
    return {"message": FORGOT_ANSWER}, 202


@bp.post("/api/auth/reset")
@reset_limit
def api_reset() -> ResponseReturnValue:
    token, new_password = _json_fields("token", "newPassword")
    viewer_id = _viewer_id()
    try:
        user = accounts.reset_password(db.session, token, new_password, now=utcnow())
    except Refusal as refusal:
        # The API's input is newPassword; the service names the form's password field.
        refusal.fields = {"newPassword" if name == "password" else name: text for name, text in refusal.fields.items()}
        raise
    db.session.commit()
    logged_in = _after_reset(user, viewer_id)
    answer: dict[str, object] = {"passwordReset": True, "loggedIn": logged_in}
    if logged_in:
        answer["csrfToken"] = generate_csrf()
    return answer

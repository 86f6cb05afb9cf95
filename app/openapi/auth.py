"""``/api/auth/``: the CSRF token, sign-up, log-in, log-out, password reset and change, sessions."""

from __future__ import annotations

from typing import Any

from app.openapi._build import EMAIL, STRING, UUID, Schema, obj, operation, ref

TAG = ("Accounts", "Sign-up, log-in and sessions. The JSON twins of the account pages.")

SCHEMAS: dict[str, Schema] = {
    "User": obj(
        ("id", "email", "role", "emailVerified"),
        id=UUID,
        email=EMAIL,
        role={"type": "string", "enum": ["SELLER", "ADMIN"]},
        emailVerified={"type": "boolean"},
    ),
    "Credentials": obj(
        ("email", "password"),
        email={**EMAIL, "examples": ["seller@example.com"]},
        password={"type": "string", "minLength": 1, "maxLength": 1024},
    ),
    "Message": obj(("message",), message=STRING),
}
_CSRF = obj(("csrfToken",), csrfToken=STRING)
_SESSION = obj(("user", "csrfToken"), user=ref("User"), csrfToken=STRING)


def _op(summary: str, **kwargs: Any) -> dict[str, Any]:
    return operation(summary, tag=TAG[0], **kwargs)


PATHS: dict[str, dict[str, Any]] = {
    "/api/auth/csrf": {
        "get": _op(
            "Get a CSRF token",
            auth="public",
            description="Starts a cookie session holding the CSRF secret; send the token in `X-CSRFToken`.",
            ok={200: _CSRF},
        )
    },
    "/api/auth/signup": {
        "post": _op(
            "Sign up",
            auth="public",
            changes=True,
            description="Answers the same 202 whether or not the address already has an account. A new address "
            "gets a confirmation link that logs the seller in the first time it is opened; a registered one gets "
            "a note that someone tried to sign up with it.",
            body=ref("Credentials"),
            ok={202: ref("Message")},
        )
    },
    "/api/auth/login": {
        "post": _op(
            "Log in",
            auth="public",
            changes=True,
            description="Wrong email and wrong password get the same 401; repeated failures lock (429).",
            body=ref("Credentials"),
            ok={200: _SESSION},
            errors=(401,),
        )
    },
    "/api/auth/logout": {
        "post": _op(
            "Log out",
            auth="public",
            changes=True,
            description="Ends every session of the account, copies of the cookie included.",
            ok={200: obj(("loggedOut",), loggedOut={"type": "boolean"})},
        )
    },
    "/api/auth/forgot": {
        "post": _op(
            "Ask for a password reset link",
            auth="public",
            changes=True,
            description="Answers the same 202 whether or not the address has an account.",
            body=obj(("email",), email=EMAIL),
            ok={202: ref("Message")},
        )
    },
    "/api/auth/reset": {
        "post": _op(
            "Reset the password with the emailed token",
            auth="public",
            changes=True,
            description="Ends every session of the account; a session of the same account stays logged in.",
            body=obj(("token", "newPassword"), token=STRING, newPassword=STRING),
            ok={
                200: obj(
                    ("passwordReset", "loggedIn"),
                    passwordReset={"type": "boolean"},
                    loggedIn={"type": "boolean"},
                    csrfToken=STRING,
                )
            },
        )
    },
    "/api/auth/password": {
        "post": _op(
            "Change the password",
            changes=True,
            description="Ends every other session of the account and keeps this one.",
            body=obj(("currentPassword", "newPassword"), currentPassword=STRING, newPassword=STRING),
            ok={200: obj(("passwordChanged", "csrfToken"), passwordChanged={"type": "boolean"}, csrfToken=STRING)},
            errors=(403,),
        )
    },
    "/api/auth/sign-out-everywhere": {
        "post": _op(
            "Sign out everywhere else",
            changes=True,
            description="Ends every other session of the account (other devices, copied cookies) and keeps this one.",
            ok={
                200: obj(("signedOutElsewhere", "csrfToken"), signedOutElsewhere={"type": "boolean"}, csrfToken=STRING)
            },
        )
    },
    "/api/auth/email": {
        "post": _op(
            "Change the email",
            changes=True,
            description="Sends a confirmation link to `newEmail`; the account's email changes only when it is "
            "opened (`POST /api/auth/email/confirm`, or the link's page), and the old address is told. The answer "
            "is the same when `newEmail` already belongs to an account (whose owner is told instead).",
            body=obj(("newEmail", "currentPassword"), newEmail=EMAIL, currentPassword=STRING),
            ok={202: obj(("pendingEmail",), pendingEmail=EMAIL)},
            errors=(403,),
        )
    },
    "/api/auth/email/confirm": {
        "post": _op(
            "Confirm a new email",
            auth="public",
            changes=True,
            description="The token of the link sent by `POST /api/auth/email`. Ends every session of the account; "
            "a signed-in caller (of that account) stays signed in and gets a fresh `csrfToken`.",
            body=obj(("token",), token={"type": "string", "maxLength": 1000}),
            ok={200: obj(("user",), user=ref("User"), csrfToken=STRING)},
            errors=(403, 409),
        )
    },
    "/api/account/delete": {
        "post": _op(
            "Delete the account",
            changes=True,
            description="Asks for the password again. Refused (409) while an accepted call has not finished.",
            body=obj(("password",), password=STRING),
            ok={200: obj(("deleted",), deleted={"type": "boolean"})},
            errors=(403, 409),
        )
    },
}

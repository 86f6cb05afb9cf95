"""Security headers on every response."""

from __future__ import annotations

from flask import Flask, Response, current_app, make_response


def content_security_policy() -> str:
    settings = current_app.extensions["settings"]
    # Chrome applies form-action to the redirect after a form post, so the paywall's 303 to
    # Stripe Checkout needs Stripe's origin here; Daily Prebuilt runs in an iframe from Daily.
    form_targets = "'self'" if settings.uses_builtin_stripe else "'self' https://checkout.stripe.com"
    frames = "'none'" if settings.uses_builtin_video else "https://*.daily.co"
    connect = "'self'" if settings.uses_builtin_video else "'self' https://*.daily.co wss://*.daily.co"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src {connect}",
            f"frame-src {frames}",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action {form_targets}",
            "frame-ancestors 'none'",
        ]
    )


def credential_page(body: str, status: int = 200) -> Response:
    """A page whose URL carries a call credential (the call, its problem report, a booked call's
    waiting page): never cached, never sent on as a Referer."""
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_security_headers(app: Flask) -> None:
    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", content_security_policy())
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
        if current_app.extensions["settings"].is_production:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response

"""``GET /u/<slug>``: a seller's public paywall, server-rendered and usable without JavaScript.

The form on the page posts back to the same URL; the payments blueprint handles that POST and,
when the input is refused, renders the page again through ``render_paywall``.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, make_response, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from app.db import db, utcnow
from app.extensions import limiter
from app.formats import call_length, format_local, format_money
from app.services.availability import load_availability, next_window, time_zone_names, windows
from app.services.paywall import PaywallView, load_paywall
from app.services.profiles import SLUG_MAX, SLUG_PATTERN
from app.web.forms.paywall import PaywallForm
from app.web.profile import photo_url

bp = Blueprint("paywall", __name__)

UNAVAILABLE_MESSAGE = "not taking calls right now"
UPCOMING_SHOWN = 10  # windows of the seller's hours listed under the proposed times
_NOT_FOUND = "No seller has this link. Check the address, or ask the seller for theirs."


@bp.get("/u/<slug>")
# Reading a public page needs no rate limit, and the check costs a tenth of the page's time. The
# POST of the same URL (checkout, another blueprint) keeps its own limits.
@limiter.exempt
def paywall(slug: str) -> ResponseReturnValue:
    if slug != slug.lower():
        return redirect(url_for("paywall.paywall", slug=slug.lower()), 301)
    # A malformed slug cannot exist: answer without asking the database.
    if len(slug) > SLUG_MAX or not SLUG_PATTERN.match(slug):
        abort(404, description=_NOT_FOUND)
    view = load_paywall(db.session, slug)
    # A deleted seller's page disappears rather than saying "not taking calls".
    if view is None or view.unavailable_reason == "deleted":
        abort(404, description=_NOT_FOUND)
    return render_paywall(view, PaywallForm())


def render_paywall(
    profile_view: PaywallView, form: PaywallForm, status: int = 200, *, message: str | None = None
) -> Response:
    """Render ``paywall.html`` for ``profile_view`` with ``form`` (bound and showing its errors
    when the payments blueprint re-renders it) and an optional ``message`` above the form."""
    settings = current_app.extensions["settings"]
    price = format_money(profile_view.price_cents, profile_view.currency)
    call_label = call_length(settings.call_duration_seconds)
    availability = load_availability(db.session, profile_view.seller_id)
    now = utcnow()
    html = render_template(
        "paywall.html",
        availability=availability,
        available_now=availability.available_now(now),
        next_window=next_window(availability, now),
        seller_time=lambda value: format_local(value, availability.time_zone),
        same_day=lambda a, b: a.astimezone(availability.zone).date() == b.astimezone(availability.zone).date(),
        now=now,
        upcoming=windows(availability, now, now + timedelta(days=7))[:UPCOMING_SHOWN],
        zones=time_zone_names() if availability.takes_bookings else (),
        hold_days=max(1, settings.hold_window_seconds // 86400),
        seller=profile_view,
        form=form,
        message=message,
        price=price,
        call_label=call_label,
        unavailable_message=UNAVAILABLE_MESSAGE,
        page_url=f"{settings.app_url}/u/{profile_view.slug}",
        image_url=photo_url(profile_view.photo_key, absolute=True),
        description=_description(profile_view, price, call_label),
        capture_manual=settings.payment_capture == "manual",
        answer_hours=max(1, round(settings.request_ttl_seconds / 3600)),
    )
    response = make_response(html, status)
    # The form carries this visitor's CSRF token: no shared cache may keep the page.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _description(view: PaywallView, price: str, call_label: str) -> str:
    """One line for link previews: the offer, then the start of the bio."""
    offer = f"Book a {call_label} video call with {view.display_name} for {price}."
    bio = " ".join(view.bio.split())
    if not bio:
        return offer
    room = 200 - len(offer) - 1
    return f"{offer} {bio if len(bio) <= room else bio[: max(0, room - 1)].rstrip() + '…'}"

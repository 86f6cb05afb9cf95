"""A seller's availability: ``GET|POST /api/availability``, the profile page's form, the
dashboard's "available now" switch and the heartbeat that keeps it on while the seller is around.

``weekly`` is a list of ``{"day": "mon".."sun", "from": "HH:MM", "to": "HH:MM"}`` in the seller's
own zone (``timeZone``, an IANA name). The page writes a day's windows as ``09:00-12:00, 14:00-18:00``.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, flash, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import Optional

from app.config import Settings
from app.db import db, utcnow
from app.errors import ApiError
from app.refusals import Invalid
from app.services.availability import (
    DAYS,
    Availability,
    WeeklyWindow,
    keep_available,
    load_availability,
    parse_weekly,
    save_availability,
    time_zone_names,
)
from app.web.auth import signed_in_user

bp = Blueprint("availability", __name__)

DAY_NAMES = dict(zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True))
# A hyphen, or the en dash a phone keyboard may put there (written as an escape).
_RANGE = re.compile(r"^\s*(\d{1,2}:\d{2})\s*[-\u2013]\s*(\d{1,2}:\d{2})\s*$")


class AvailabilityForm(FlaskForm):
    time_zone = StringField("Your time zone", validators=[Optional()])
    available_now = BooleanField("Available now")
    mon = StringField("Monday", validators=[Optional()])
    tue = StringField("Tuesday", validators=[Optional()])
    wed = StringField("Wednesday", validators=[Optional()])
    thu = StringField("Thursday", validators=[Optional()])
    fri = StringField("Friday", validators=[Optional()])
    sat = StringField("Saturday", validators=[Optional()])
    sun = StringField("Sunday", validators=[Optional()])


class SwitchForm(FlaskForm):
    on = HiddenField(validators=[Optional()])


@bp.app_template_global("seller_availability")
def seller_availability() -> dict[str, Any]:
    """What the profile's availability card and the dashboard's switch show."""
    availability = load_availability(db.session, signed_in_user().id)
    by_day: dict[str, list[str]] = {day: [] for day in DAYS}
    for window in availability.weekly:
        text = window.to_json()
        by_day[text["day"]].append(f"{text['from']}-{text['to']}")
    return {
        "time_zone": availability.time_zone,
        "saved": bool(availability.weekly) or availability.available_now_until is not None,
        "days": [(day, DAY_NAMES[day], ", ".join(by_day[day])) for day in DAYS],
        "available_now": availability.available_now(utcnow()),
        "zones": time_zone_names(),
        "idle_minutes": round(_settings().available_now_idle_seconds / 60),
    }


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/availability")
@login_required
def api_get() -> ResponseReturnValue:
    return jsonify(load_availability(db.session, signed_in_user().id).to_json(utcnow()))


@bp.post("/api/availability")
@login_required
def api_save() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object with timeZone, weekly and availableNow.")
    weekly = parse_weekly(body["weekly"]) if "weekly" in body else None
    now_on = body.get("availableNow")
    if now_on is not None and not isinstance(now_on, bool):
        raise Invalid("bad_switch", "availableNow is true or false.", field="availableNow")
    time_zone = body.get("timeZone")
    saved = _save(None if time_zone is None else str(time_zone), weekly, now_on)
    db.session.commit()
    return jsonify(saved.to_json(utcnow()))


@bp.post("/api/availability/heartbeat")
@login_required
def api_heartbeat() -> ResponseReturnValue:
    """The dashboard says the seller is still there: an "available now" still on stays on."""
    keep_available(db.session, signed_in_user().id, now=utcnow(), idle_seconds=_settings().available_now_idle_seconds)
    db.session.commit()
    availability = load_availability(db.session, signed_in_user().id).to_json(utcnow())
    return jsonify(availableNow=availability["availableNow"], availableNowUntil=availability["availableNowUntil"])


# --- Pages -----------------------------------------------------------------------------------


@bp.post("/profile/availability")
@login_required
def save_page() -> ResponseReturnValue:
    form = AvailabilityForm()
    if not form.validate_on_submit():
        flash("This form expired. Please try again.", "error")
        return redirect(url_for("profile.profile_page", _anchor="availability"), 303)
    try:
        weekly = parse_weekly([window for day in DAYS for window in _day_windows(day, getattr(form, day).data or "")])
        _save(form.time_zone.data or "UTC", weekly, bool(form.available_now.data))
    except Invalid as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(url_for("profile.profile_page", _anchor="availability"), 303)
    db.session.commit()
    flash("Availability saved.", "success")
    return redirect(url_for("profile.profile_page", _anchor="availability"), 303)


@bp.post("/availability/now")
@login_required
def switch_page() -> ResponseReturnValue:
    form = SwitchForm()
    if form.validate_on_submit() and form.on.data in ("1", "0"):
        _save(None, None, form.on.data == "1")
        db.session.commit()
        flash(
            "You show as available now." if form.on.data == "1" else "You no longer show as available now.", "success"
        )
    return redirect(url_for("dashboard.dashboard"), 303)


def _save(time_zone: str | None, weekly: tuple[WeeklyWindow, ...] | None, available_now: bool | None) -> Availability:
    return save_availability(
        db.session,
        signed_in_user().id,
        time_zone=time_zone,
        weekly=weekly,
        available_now=available_now,
        now=utcnow(),
        idle_seconds=_settings().available_now_idle_seconds,
    )


def _day_windows(day: str, text: str) -> list[dict[str, str]]:
    """``09:00-12:00, 14:00-18:00`` → the API's windows for ``day``; ``parse_weekly`` checks them."""
    windows = []
    for part in filter(str.strip, text.split(",")):
        match = _RANGE.match(part)
        if match is None:
            raise Invalid("bad_hours", f"Write {DAY_NAMES[day]}'s hours like 09:00-17:00.", field=day)
        start, end = (value.zfill(5) for value in match.groups())
        windows.append({"day": day, "from": start, "to": end})
    return windows


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings

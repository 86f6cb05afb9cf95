"""Flask-WTF forms, one module per area. Every form carries a CSRF token."""

from __future__ import annotations

from collections.abc import Callable

from flask import request
from flask_wtf import FlaskForm

from app.db import db
from app.errors import refusal_status
from app.refusals import Refusal


def submit(form: FlaskForm, act: Callable[[], object]) -> tuple[int, str | None]:
    """A page's form and the one domain action it posts, as (HTTP status, message to show):
    200 on a GET; 422 when the form does not validate; 201 once ``act`` ran and was committed; the
    refusal's status and message when the domain refused, with nothing written."""
    if request.method != "POST":
        return 200, None
    if not form.validate_on_submit():
        return 422, None
    try:
        act()
    except Refusal as refusal:
        db.session.rollback()
        return refusal_status(refusal), refusal.message
    db.session.commit()
    return 201, None

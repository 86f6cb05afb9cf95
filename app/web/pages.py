"""Static public pages: landing, privacy, terms."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def landing():  # type: ignore[no-untyped-def]
    return render_template("landing.html")


@bp.get("/privacy")
def privacy():  # type: ignore[no-untyped-def]
    return render_template("privacy.html")


@bp.get("/terms")
def terms():  # type: ignore[no-untyped-def]
    return render_template("terms.html")

"""Static public pages: landing, privacy, terms."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

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


@bp.get("/favicon.ico")
def favicon():  # type: ignore[no-untyped-def]
    # Browsers ask for /favicon.ico whatever the page says; ours is an SVG.
    return redirect(url_for("static", filename="img/favicon.svg"), code=301)

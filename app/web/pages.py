"""Static public pages: landing, privacy, terms."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

bp = Blueprint("pages", __name__)


@bp.get("/")
def landing() -> ResponseReturnValue:
    return render_template("landing.html")


@bp.get("/privacy")
def privacy() -> ResponseReturnValue:
    return render_template("privacy.html")


@bp.get("/terms")
def terms() -> ResponseReturnValue:
    return render_template("terms.html")


@bp.get("/favicon.ico")
def favicon() -> ResponseReturnValue:
    # Browsers ask for /favicon.ico whatever the page says; ours is an SVG.
    return redirect(url_for("static", filename="img/favicon.svg"), code=301)

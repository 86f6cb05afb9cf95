"""Static public pages: landing, privacy, terms; and the settlement rules every page may show."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from app.services import settlement_text

bp = Blueprint("pages", __name__)


@bp.app_template_global("settlement_rules")
def settlement_rules() -> list[tuple[str, str, str]]:
    """The rules of ``templates/_settlement_rules.html``, with this deployment's early-end minimum
    and cancellation notice."""
    settings = current_app.extensions["settings"]
    return settlement_text.rules(settings.early_end_minimum_seconds, settings.cancel_notice_seconds)


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

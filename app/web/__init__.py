"""Blueprints: parse the input, call one service, commit, respond."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.web import auth, health, pages, security  # noqa: F401 (auth registers the user loader)

    security.init_security_headers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)

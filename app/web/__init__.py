"""Blueprints: parse the input, call one service, commit, respond."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.web import auth, health, input_guard, pages, presentation, security

    security.init_security_headers(app)
    presentation.init_presentation(app)
    input_guard.init_input_guard(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(auth.bp)

    from app.web import dev_mailbox

    app.register_blueprint(dev_mailbox.bp)

    from app.web import dashboard, paywall, profile

    app.register_blueprint(profile.bp)
    app.register_blueprint(paywall.bp)
    app.register_blueprint(dashboard.bp)

    from app.web import requests as seller_requests

    app.register_blueprint(seller_requests.bp)

    from app.web import buyer, dev_checkout, payments, webhooks

    app.register_blueprint(payments.bp)
    app.register_blueprint(buyer.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(dev_checkout.bp)

    from app.web import calls

    app.register_blueprint(calls.bp)

    from app.web import availability, schedule

    app.register_blueprint(availability.bp)
    app.register_blueprint(schedule.bp)

    from app.web import admin_payouts, admin_transfers, dev_connect, metrics, money, payouts_setup

    app.register_blueprint(money.bp)
    app.register_blueprint(payouts_setup.bp)
    app.register_blueprint(dev_connect.bp)
    app.register_blueprint(admin_payouts.bp)
    app.register_blueprint(admin_transfers.bp)
    app.register_blueprint(metrics.bp)

    from app.web import account_email, admin, privacy, problems, safety, sessions

    app.register_blueprint(safety.bp)
    app.register_blueprint(problems.bp)
    app.register_blueprint(problems.admin_bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(privacy.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(account_email.bp)

    from app.web import api_docs, live

    app.register_blueprint(api_docs.bp)
    app.register_blueprint(live.bp)

"""What a task needs from the running app: the settings and the configured vendors."""

from __future__ import annotations

from flask import current_app

from app.config import Settings
from app.extensions import redis_client
from app.integrations.connect import ConnectGateway, connect_gateway
from app.integrations.payments import PaymentGateway, payment_gateway
from app.integrations.storage import Storage
from app.integrations.video import VideoProvider, video_provider


def settings() -> Settings:
    found: Settings = current_app.extensions["settings"]
    return found


def payments() -> PaymentGateway:
    """Stripe when STRIPE_SECRET_KEY is set, the built-in checkout otherwise."""
    return payment_gateway(settings(), redis_client())


def connect() -> ConnectGateway:
    """Stripe Connect when STRIPE_SECRET_KEY is set, the built-in twin otherwise."""
    return connect_gateway(settings(), redis_client())


def video() -> VideoProvider:
    """Daily when DAILY_API_KEY is set, the built-in room otherwise."""
    return video_provider(settings())


def storage() -> Storage:
    """The S3 bucket when S3_BUCKET is set, files under instance/uploads otherwise."""
    found: Storage = current_app.extensions["storage"]
    return found

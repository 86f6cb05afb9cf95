"""Flask extensions, created unbound here and bound to the app in ``create_app()``."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def redis_client(app: Flask | None = None) -> redis.Redis:
    from flask import current_app

    client: redis.Redis = (app or current_app).extensions["redis"]
    return client


def init_redis(app: Flask, url: str) -> None:
    app.extensions["redis"] = redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30, decode_responses=True
    )


def limiter_storage_uri(redis_url: str) -> str:
    """The ``limits`` package spells a unix socket ``redis+unix:///path``."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"redis+unix://{parts.path}"
    return redis_url


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells a unix socket ``redis+socket:///path``."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}"
    return redis_url

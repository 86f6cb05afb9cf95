"""ChatLink: sell short video calls. ``create_app()`` is the one place where everything is wired."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

# First of the app's own imports: app.metrics exports PROMETHEUS_MULTIPROC_DIR before anything can
# import prometheus_client, which reads it once (see app/metrics.py).
from app import metrics as _metrics  # noqa: F401
from app.celery_app import celery_init_app
from app.config import PROJECT_ROOT, Settings
from app.db import db
from app.engines import resolve_engines
from app.errors import register_error_handlers
from app.extensions import csrf, init_redis, limiter, limiter_storage_uri, login_manager
from app.integrations.storage import storage_for
from app.observability import configure_logging, init_request_ids, init_sentry
from app.startup import check_engines

MAX_UPLOAD_BYTES = 6 * 1024 * 1024  # a 5 MB photo plus the rest of the form


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. With no ``settings``, read them from the environment; start the embedded
    PostgreSQL and Redis for any URL left unset; refuse to start if an engine is unreachable."""
    settings = resolve_engines(settings or Settings.from_env())
    check_engines(settings)
    configure_logging(settings)
    init_sentry(settings)

    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(settings.instance_path),
    )
    app.extensions["settings"] = settings
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.app_env == "test",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.is_production,
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        RATELIMIT_STORAGE_URI=limiter_storage_uri(settings.redis_url or ""),
        RATELIMIT_KEY_PREFIX=f"chatlink:{settings.celery_queue}:rl",
        RATELIMIT_HEADERS_ENABLED=True,
        # With Redis down, rate limits fail open (logged) rather than turning every request into an
        # error: the pages that matter then still answer, and the database stays the source of truth.
        RATELIMIT_SWALLOW_ERRORS=True,
        SEND_FILE_MAX_AGE_DEFAULT=31536000,
    )

    if settings.trusted_proxies:
        # Behind a load balancer, take the client address and scheme from that many proxies'
        # X-Forwarded-* headers (rate limits key on the client address); never trust more.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]  # middleware wraps wsgi_app, as Flask documents

    db.init_app(app, settings.database_url or "")
    app.extensions["storage"] = storage_for(settings)
    init_redis(app, settings.redis_url or "")
    from app import live

    live.configure(
        live.LiveFeed(app.extensions["redis"], f"chatlink:{settings.celery_queue}", max_waiters=settings.live_waiters)
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    celery_init_app(app, settings)
    init_request_ids(app)
    register_error_handlers(app)

    from app.web import register_blueprints

    register_blueprints(app)

    from app.cli import chatlink_cli

    app.cli.add_command(chatlink_cli)
    return app

"""Every setting ChatLink reads, read once from the environment and validated.

This is the only module that looks at ``os.environ``. ``Settings.from_env()`` returns a frozen
object; a bad value raises ``ConfigError`` naming the variable, so start-up fails with one clear
line instead of a stack trace deep inside a request. ``.env.example`` documents every field.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEV_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105 (refused in production)
DEV_WEBHOOK_SECRET = "whsec_chatlink_dev_only"  # noqa: S105 (refused in production)
DEV_CONNECT_WEBHOOK_SECRET = "whsec_chatlink_connect_dev_only"  # noqa: S105 (never used in production)

APP_ENVS = ("development", "test", "production")
METRICS_TOKEN_MIN = 24
CAPTURE_MODES = ("manual", "immediate")

# Celery redelivers an unacknowledged Redis message after this many seconds. Every ETA we schedule
# (the end of a call) is at most CALL_DURATION_SECONDS ahead, so this must stay above it; see
# app/celery_app.py for the whole acknowledgement policy.
CELERY_VISIBILITY_TIMEOUT = 900

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message starts with the variable's name."""


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    secret_key: str = DEV_SECRET_KEY
    app_url: str = "http://127.0.0.1:5000"
    instance_path: Path = PROJECT_ROOT / "instance"
    log_level: str = "INFO"

    # Engines. None means "start the embedded one under instance/".
    database_url: str | None = None
    redis_url: str | None = None

    # Payments.
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str = DEV_WEBHOOK_SECRET
    stripe_api_base: str | None = None
    # Stripe Connect: a Connect endpoint signs with its own secret (events of connected accounts).
    stripe_connect_webhook_secret: str | None = DEV_CONNECT_WEBHOOK_SECRET
    # Countries where sellers can be paid by Stripe Connect; the first is the platform's own.
    # Empty: Connect is off and sellers use the manual payout methods.
    connect_countries: tuple[str, ...] = ("US",)
    payment_capture: str = "manual"
    platform_fee_bps: int = 2000
    currency: str = "usd"

    # Calls.
    call_duration_seconds: int = 300
    request_ttl_seconds: int = 86400
    join_window_seconds: int = 900
    # Scheduled calls (calls at a time the buyer proposed and the seller confirmed).
    join_opens_before_seconds: int = 300
    cancel_notice_seconds: int = 86400
    hold_window_seconds: int = 518400
    available_now_idle_seconds: int = 1800
    sweep_interval_seconds: int = 5
    celery_queue: str = "chatlink"
    webrtc_ice_servers: tuple[dict[str, Any], ...] = ()
    daily_api_key: str | None = None
    daily_api_base: str = "https://api.daily.co/v1"
    # Daily's webhook HMAC secret (base64, as Daily gives it). Unset: the worker polls Daily's
    # REST presence instead of listening to participant.joined/left.
    daily_webhook_secret: str | None = None
    # A seller who ends the call before this many connected seconds refunds the buyer in full.
    early_end_minimum_seconds: int = 60

    # Email.
    postmark_server_token: str | None = None
    postmark_api_base: str = "https://api.postmarkapp.com"
    email_from: str = "ChatLink <no-reply@chatlink.localhost>"

    # Photos. None means "files under instance/uploads".
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    # Operations.
    trusted_proxies: int = 0
    sentry_dsn: str | None = None
    metrics_token: str | None = None
    # Live pages: how many long-polls one web process lets wait at once (app/live.py).
    live_waiters: int = 4
    live_wait_seconds: int = 20

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def uses_builtin_stripe(self) -> bool:
        return not self.stripe_secret_key

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Every secret a Stripe webhook may be signed with: the platform endpoint's (several,
        comma-separated, during a rotation) and the Connect endpoint's."""
        platform = tuple(part.strip() for part in self.stripe_webhook_secret.split(",") if part.strip())
        connect = (self.stripe_connect_webhook_secret,) if self.stripe_connect_webhook_secret else ()
        return platform + connect

    @property
    def connect_enabled(self) -> bool:
        return bool(self.connect_countries)

    @property
    def uses_builtin_video(self) -> bool:
        return not self.daily_api_key

    @property
    def uses_dev_mailbox(self) -> bool:
        return not self.postmark_server_token

    @property
    def uses_local_storage(self) -> bool:
        return not self.s3_bucket

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Read and validate every setting. ``environ`` defaults to the process environment;
        with ``dotenv`` it is completed (never overridden) by ``.env`` at the project root."""
        env = dict(os.environ if environ is None else environ)
        if dotenv:
            env = {**_read_dotenv(PROJECT_ROOT / ".env"), **env}
        reader = _Reader(env)
        settings = cls(
            app_env=reader.choice("APP_ENV", APP_ENVS, "development"),
            secret_key=reader.text("SECRET_KEY", DEV_SECRET_KEY),
            app_url=reader.url("APP_URL", "http://127.0.0.1:5000", ("http", "https")).rstrip("/"),
            instance_path=Path(reader.text("INSTANCE_PATH", str(PROJECT_ROOT / "instance"))),
            log_level=reader.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            database_url=_normalise_database_url(reader.optional("DATABASE_URL")),
            redis_url=_validate_redis_url(reader.optional("REDIS_URL")),
            stripe_secret_key=reader.optional("STRIPE_SECRET_KEY"),
            stripe_webhook_secret=reader.text("STRIPE_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET),
            stripe_api_base=reader.optional_url("STRIPE_API_BASE"),
            stripe_connect_webhook_secret=reader.optional("STRIPE_CONNECT_WEBHOOK_SECRET")
            or (None if reader.optional("APP_ENV") == "production" else DEV_CONNECT_WEBHOOK_SECRET),
            connect_countries=_parse_countries(reader.text("CONNECT_COUNTRIES", "US")),
            payment_capture=reader.choice("PAYMENT_CAPTURE", CAPTURE_MODES, "manual"),
            platform_fee_bps=reader.integer("PLATFORM_FEE_BPS", 2000, low=0, high=10000),
            currency=reader.text("CURRENCY", "usd").lower(),
            call_duration_seconds=reader.integer(
                "CALL_DURATION_SECONDS", 300, low=1, high=CELERY_VISIBILITY_TIMEOUT - 60
            ),
            request_ttl_seconds=reader.integer("REQUEST_TTL_SECONDS", 86400, low=1),
            join_window_seconds=reader.integer("JOIN_WINDOW_SECONDS", 900, low=1),
            join_opens_before_seconds=reader.integer("JOIN_OPENS_BEFORE_SECONDS", 300, low=0, high=3600),
            cancel_notice_seconds=reader.integer("CANCEL_NOTICE_SECONDS", 86400, low=0),
            # Stripe keeps an online card hold about 7 days; proposals must fall inside it.
            hold_window_seconds=reader.integer("HOLD_WINDOW_SECONDS", 518400, low=3600, high=7 * 86400),
            available_now_idle_seconds=reader.integer("AVAILABLE_NOW_IDLE_SECONDS", 1800, low=60),
            sweep_interval_seconds=reader.integer("SWEEP_INTERVAL_SECONDS", 5, low=1, high=3600),
            celery_queue=reader.text("CELERY_QUEUE", "chatlink"),
            webrtc_ice_servers=_parse_ice_servers(reader.optional("WEBRTC_ICE_SERVERS")),
            daily_api_key=reader.optional("DAILY_API_KEY"),
            daily_api_base=reader.url("DAILY_API_BASE", "https://api.daily.co/v1").rstrip("/"),
            daily_webhook_secret=_validate_base64("DAILY_WEBHOOK_SECRET", reader.optional("DAILY_WEBHOOK_SECRET")),
            early_end_minimum_seconds=reader.integer("EARLY_END_MINIMUM_SECONDS", 60, low=0, high=3600),
            postmark_server_token=reader.optional("POSTMARK_SERVER_TOKEN"),
            postmark_api_base=reader.url("POSTMARK_API_BASE", "https://api.postmarkapp.com"),
            email_from=reader.text("EMAIL_FROM", "ChatLink <no-reply@chatlink.localhost>"),
            s3_bucket=reader.optional("S3_BUCKET"),
            s3_endpoint_url=reader.optional_url("S3_ENDPOINT_URL"),
            s3_region=reader.text("S3_REGION", "us-east-1"),
            aws_access_key_id=reader.optional("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=reader.optional("AWS_SECRET_ACCESS_KEY"),
            trusted_proxies=reader.integer("TRUSTED_PROXIES", 0, low=0, high=5),
            sentry_dsn=reader.optional("SENTRY_DSN"),
            metrics_token=reader.optional("METRICS_TOKEN"),
            live_waiters=reader.integer("LIVE_WAITERS", 4, low=0, high=256),
            live_wait_seconds=reader.integer("LIVE_WAIT_SECONDS", 20, low=1, high=55),
        )
        if len(settings.currency) != 3 or not settings.currency.isalpha():
            raise ConfigError("CURRENCY: must be a three-letter ISO currency code such as usd")
        settings.check_storage()
        settings.check_production()
        return settings

    def check_production(self) -> None:
        """Production refuses development defaults: a known secret or any built-in provider."""
        if not self.is_production:
            return
        required = {
            "SECRET_KEY": self.secret_key != DEV_SECRET_KEY and len(self.secret_key) >= 32,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "STRIPE_SECRET_KEY": self.stripe_secret_key,
            "STRIPE_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET not in self.webhook_secrets,
            "STRIPE_CONNECT_WEBHOOK_SECRET": self.stripe_connect_webhook_secret != DEV_CONNECT_WEBHOOK_SECRET,
            "DAILY_API_KEY": self.daily_api_key,
            "POSTMARK_SERVER_TOKEN": self.postmark_server_token,
            # Files on one host's disk cannot be served by another host behind the load balancer.
            "S3_BUCKET": self.s3_bucket,
        }
        for name, ok in required.items():
            if not ok:
                raise ConfigError(
                    f"{name}: must be set to a real value when APP_ENV=production "
                    "(the built-in development default is refused)"
                )
        if not self.app_url.startswith("https://"):
            raise ConfigError("APP_URL: must be an https:// address when APP_ENV=production")
        # Without a token /metrics would tell anyone the platform's volumes and error rates.
        if not self.metrics_token or len(self.metrics_token) < METRICS_TOKEN_MIN:
            raise ConfigError(
                f"METRICS_TOKEN: must be set when APP_ENV=production, at least {METRICS_TOKEN_MIN} characters "
                "(GET /metrics then answers only with Authorization: Bearer <token>)"
            )

    def check_storage(self) -> None:
        """With a bucket, the keys come as a pair (or neither: boto3 then finds an instance role).
        Without one the S3 settings are unused; AWS keys in the environment may serve other tools."""
        if not self.s3_bucket:
            return
        if not _S3_BUCKET.match(self.s3_bucket):
            raise ConfigError(f"S3_BUCKET: {self.s3_bucket!r} is not a valid bucket name (3-63 of a-z 0-9 . -)")
        if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            missing = "AWS_SECRET_ACCESS_KEY" if self.aws_access_key_id else "AWS_ACCESS_KEY_ID"
            raise ConfigError(f"{missing}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


class _Reader:
    """Typed access to a mapping of raw strings; every error names the variable."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name, default)
        if value not in allowed:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def integer(self, name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name}: {value} is outside the allowed range {low}..{high}")
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
        value = self.text(name, default)
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(f"{name}: {value!r} is not a valid {'/'.join(schemes)} URL")
        return value

    def optional_url(self, name: str) -> str | None:
        return self.url(name, "") if self.optional(name) else None


def metrics_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where prometheus_client's per-process files live: ``PROMETHEUS_MULTIPROC_DIR`` when set,
    otherwise ``<INSTANCE_PATH>/prometheus`` (``.env`` completes the environment, as above)."""
    env = {**_read_dotenv(PROJECT_ROOT / ".env"), **(os.environ if environ is None else environ)}
    explicit = env.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if explicit:
        return Path(explicit)
    return Path(env.get("INSTANCE_PATH", "").strip() or PROJECT_ROOT / "instance") / "prometheus"


def prepare_metrics_dir() -> Path:
    """Create the metrics directory and export it as ``PROMETHEUS_MULTIPROC_DIR``.

    Every ChatLink process (each gunicorn worker, each Celery worker child, the CLI) writes its
    counters to its own files there and ``GET /metrics`` adds them all up. prometheus_client picks
    its mode from this variable once, when it is first imported, so ``app.metrics`` calls this
    right before importing it (and nothing else imports the library): every launcher (Procfile,
    ``make run``, tests, a shell) then gets multiprocess mode without having to remember it.
    """
    path = metrics_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def _normalise_database_url(value: str | None) -> str | None:
    """Accept the usual ``postgres://`` spellings and pin the psycopg 3 driver."""
    if value is None:
        return None
    parts = urlsplit(value)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        rest = value.split("://", 1)[1]
        if not parts.path.strip("/"):
            raise ConfigError("DATABASE_URL: names no database (expected postgresql://user@host/dbname)")
        return f"postgresql+psycopg://{rest}"
    raise ConfigError(
        f"DATABASE_URL: scheme {scheme!r} is not supported; ChatLink runs on PostgreSQL only "
        "(postgresql://user:password@host:5432/dbname)"
    )


def _validate_redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        return value
    if parts.scheme == "unix" and parts.path:
        return value
    raise ConfigError(f"REDIS_URL: {value!r} is not a redis://host:port/db or unix:///path URL")


def _validate_base64(name: str, value: str | None) -> str | None:
    """A secret given in base64 (Daily's webhook HMAC): refused at start-up if it does not decode,
    rather than failing every delivery later."""
    if value is None:
        return None
    try:
        decoded = base64.b64decode(value, validate=True)
    except ValueError:
        raise ConfigError(f"{name}: is not base64 (use the hmac value Daily returned)") from None
    if not decoded:
        raise ConfigError(f"{name}: decodes to nothing")
    return value


def _parse_countries(value: str) -> tuple[str, ...]:
    """``"US, ca"`` → ``("US", "CA")``; ``"none"`` (or nothing) turns Stripe Connect off."""
    if value.strip().lower() == "none":
        return ()
    countries = tuple(part.strip().upper() for part in value.split(",") if part.strip())
    for country in countries:
        if len(country) != 2 or not country.isalpha():
            raise ConfigError(f"CONNECT_COUNTRIES: {country!r} is not a two-letter ISO country code such as US")
    return countries


def _parse_ice_servers(value: str | None) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    try:
        servers = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError("WEBRTC_ICE_SERVERS: is not valid JSON (expected a list of RTCIceServer objects)") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise ConfigError('WEBRTC_ICE_SERVERS: must be a JSON list like [{"urls": "stun:host:3478"}]')
    return tuple(servers)


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path).items() if value is not None}

"""Start-up checks: an unreachable engine stops start-up with one line naming its variable."""

from __future__ import annotations

import psycopg
import redis
from sqlalchemy.engine import make_url

from app.config import ConfigError, Settings


def check_engines(settings: Settings) -> None:
    _check_database(settings.database_url or "")
    _check_redis(settings.redis_url or "")


def _check_database(url: str) -> None:
    try:
        libpq_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(libpq_url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # any failure here means the URL is unusable
        raise ConfigError(f"DATABASE_URL: cannot connect ({_first_line(error)})") from None


def _check_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except Exception as error:
        raise ConfigError(f"REDIS_URL: cannot connect ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

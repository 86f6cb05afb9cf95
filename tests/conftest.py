"""Test harness, in the manner of warehouse's.

* Real PostgreSQL, never SQLite: ``DATABASE_URL``'s server when it is set, otherwise an embedded
  PostgreSQL started for this run. Each run creates its own database, builds it with Alembic
  and drops it at the end, so concurrent runs never meet.
* Real Redis: ``REDIS_URL`` when set, otherwise an embedded Redis for this run. Each run uses its
  own Celery queue and key prefix.
* A savepoint per test (``db_session``): every commit in the code under test is a savepoint
  release inside one outer transaction that is rolled back afterwards. Tests that need real
  concurrent transactions use ``committed_db`` instead, which truncates every table afterwards.
* Tasks are recorded, not published (``enqueued``): a test runs them explicitly, as warehouse
  does. Tests marked ``real_celery`` publish to the real broker.
"""

from __future__ import annotations

import os
import tempfile

# Each test run keeps its Prometheus per-process files apart (and away from a developer's
# instance/): prometheus_client reads this once, when app.metrics first imports it below.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chatlink-metrics-")
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from celery.app.task import Task
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from app import create_app, live
from app.config import PROJECT_ROOT, Settings
from app.db import Base, db
from app.engines import ScratchEngines
from tests import factories
from tests.fakes.s3 import S3Server

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def engine_urls() -> Iterator[tuple[str, str]]:
    """(database URL, redis URL) for this run; embedded servers when the env names none."""
    scratch = PROJECT_ROOT / "instance" / f"test-{RUN_ID}"
    engines = ScratchEngines(
        scratch,
        f"chatlink_test_{RUN_ID}",
        database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"),
    )
    try:
        yield engines.start()
    finally:
        db.engine.dispose() if db.engine is not None else None
        live.LiveFeed.stop_all()  # before the embedded Redis its listeners read goes away
        engines.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def migrated(engine_urls: tuple[str, str]) -> str:
    database_url = engine_urls[0]
    command.upgrade(alembic_config(database_url), "head")
    return database_url


@pytest.fixture(scope="session")
def settings(engine_urls: tuple[str, str], migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.from_env(
        {
            "APP_ENV": "test",
            "DATABASE_URL": migrated,
            "REDIS_URL": engine_urls[1],
            "CELERY_QUEUE": f"test-{RUN_ID}",
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
            "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
            "LOG_LEVEL": "WARNING",
            # Live pages' long-polls answer "nothing new" after a second, not twenty (the API fuzz
            # calls them many times).
            "LIVE_WAIT_SECONDS": "1",
        },
        dotenv=False,
    )


@pytest.fixture(scope="session")
def app(settings: Settings):  # type: ignore[no-untyped-def]
    return create_app(settings)


@pytest.fixture
def make_app(app):  # type: ignore[no-untyped-def]
    """Build extra apps (other settings); the process-wide ``db`` is restored afterwards."""
    saved = (db.engine, db._sessionmaker)
    built = []

    def restore() -> None:
        db.engine, db._sessionmaker = saved
        # create_app() makes its Celery app the default one; shared tasks must go back to ours.
        app.extensions["celery"].set_default()

    def build(settings: Settings):  # type: ignore[no-untyped-def]
        try:
            new_app = create_app(settings)
        finally:
            if db.engine is not saved[0]:
                built.append(db.engine)
            restore()
        return new_app

    yield build
    for engine in built:
        engine.dispose()
    restore()


@pytest.fixture
def db_session(app):  # type: ignore[no-untyped-def]
    """A session whose work is rolled back after the test, and every session the app opens
    during the test joins the same outer transaction."""
    connection = db.engine.connect()
    outer = connection.begin()
    db.bind_to(connection)
    session = db.new_session()
    factories.bind(session)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()
        db.unbind()


@pytest.fixture
def committed_db(app):  # type: ignore[no-untyped-def]
    """Real commits (for concurrency tests); every table is emptied afterwards."""
    session = db.new_session()
    factories.bind(session)
    try:
        yield session
    finally:
        session.close()
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
def client(app, db_session):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def served_app(committed_db, make_app, settings) -> Iterator:  # type: ignore[no-untyped-def,type-arg]
    """The app under a real HTTP server on 127.0.0.1, with APP_URL pointing at it."""
    holder: dict = {}
    server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
    holder["app"] = make_app(settings.replace(app_url=f"http://127.0.0.1:{server.server_port}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["app"]
    finally:
        server.shutdown()


@pytest.fixture
def redis(app):  # type: ignore[no-untyped-def]
    client = app.extensions["redis"]
    yield client
    # Our own keys, and Flask-Limiter's (stored as LIMITS:LIMITER/<our prefix>/...).
    for pattern in (f"chatlink:test-{RUN_ID}:*", f"LIMITS:LIMITER/chatlink:test-{RUN_ID}:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


class Enqueued(list):
    """Tasks the code under test enqueued, as (task name, args, options)."""

    def names(self) -> list[str]:
        return [name for name, _, _ in self]


@pytest.fixture(autouse=True)
def enqueued(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Enqueued:
    recorded = Enqueued()
    if request.node.get_closest_marker("real_celery") is None:

        def record(self: Task, args=None, kwargs=None, **options):  # type: ignore[no-untyped-def]
            recorded.append((self.name, tuple(args or ()), options))

        monkeypatch.setattr(Task, "apply_async", record)
    return recorded


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-speaking server (moto_server) on a loopback port, for this run's storage tests."""
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on ``s3_server`` for one test."""
    return s3_server.create_bucket(f"photos-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


def fresh_engine(url: str):  # type: ignore[no-untyped-def]
    return create_engine(url)


def login(client, user) -> None:  # type: ignore[no-untyped-def]
    """Log ``user`` in on ``client`` the way Flask-Login's cookie session would."""
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True


def csrf_token(client) -> str:  # type: ignore[no-untyped-def]
    """A valid CSRF token for ``client``'s session (for the JSON API's X-CSRFToken header)."""
    response = client.get("/api/auth/csrf")
    return response.get_json()["csrfToken"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first; end-to-end tests (real processes committing real rows) last, so what
    they leave behind can never meet a unit or functional test."""
    items.sort(key=lambda item: "/tests/e2e/" in str(item.fspath))

"""Browser fixtures: the whole product running for real (gunicorn, a Celery worker and beat, on this
run's engines and the built-in providers), and Debian's Chromium driven by Playwright.

Run through ``make test``, which starts these tests inside a loopback-only network namespace. Without
Chromium (a developer machine) they are skipped; CI sets CHATLINK_REQUIRE_BROWSER=1 so that a missing
browser fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from alembic import command as alembic_command
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from app.config import PROJECT_ROOT, Settings
from app.engines import create_database, drop_database
from tests.e2e.conftest import BIN, process_env
from tests.e2e.make_run import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
# One folder per run, so that parallel runs do not mix their screenshots and server logs.
ARTIFACTS = PROJECT_ROOT / "artifacts" / "browser" / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.real_celery)


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CHATLINK_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class LiveStack:
    """One running ChatLink: web, worker and beat as separate processes."""

    url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_stack(settings: Settings, log_dir: Path, **overrides: str) -> LiveStack:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(settings, APP_URL=url, LOG_LEVEL="INFO", **overrides)
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [
            str(BIN / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "celery_worker",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
        ],
        "beat": [
            str(BIN / "celery"),
            "-A",
            "celery_worker",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(log_dir / "celerybeat-schedule"),
        ],
    }
    stack = LiveStack(url=url, env=env)
    for name, command in commands.items():
        # The child keeps its own copy of the descriptor, so ours can be closed at once.
        with open(log_dir / f"{name}.log", "ab") as log:
            stack.processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and all(proc.poll() is None for proc in stack.processes):
        try:
            # Gunicorn accepts connections before its workers have booted, so a slow boot on a busy
            # machine reads as a timeout: keep polling until the deadline.
            if requests.get(f"{url}/api/health", timeout=5).json().get("worker") == "ok":
                return stack
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.3)
    stack.stop()
    raise RuntimeError(f"the live stack did not become healthy; see {log_dir}")


@contextmanager
def separate_stack(settings: Settings, log_dir: Path, **overrides: str) -> Iterator[tuple[LiveStack, Engine]]:
    """Another deployment next to ``live``: its own database (built by Alembic) and its own queue, so
    that neither stack's workers or sweeps act on the other's rows with the wrong settings. Yields
    the stack and an engine on its database, for the test's own checks."""
    from tests.conftest import alembic_config

    server = make_url(str(settings.database_url))
    name = f"{server.database}_{uuid.uuid4().hex[:6]}"
    admin_url = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    database_url = server.set(database=name).render_as_string(hide_password=False)
    create_database(admin_url, name)
    engine = create_engine(database_url)
    stack = None
    try:
        alembic_command.upgrade(alembic_config(database_url), "head")
        queue = f"{settings.celery_queue}-{name[-6:]}"
        stack = start_stack(settings, log_dir, DATABASE_URL=database_url, CELERY_QUEUE=queue, **overrides)
        yield stack, engine
    finally:
        if stack is not None:
            stack.stop()
        engine.dispose()
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser artifacts (screenshots, logs): {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="session")
def live(app, settings: Settings, artifacts: Path) -> Iterator[LiveStack]:  # type: ignore[no-untyped-def]
    """The product with calls of a few seconds and a fast sweep."""
    stack = start_stack(
        settings,
        artifacts / "logs",
        CALL_DURATION_SECONDS="8",
        SWEEP_INTERVAL_SECONDS="1",
        JOIN_WINDOW_SECONDS="120",
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    _require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def new_context(browser):  # type: ignore[no-untyped-def]
    """Make isolated browser contexts (a seller's, a buyer's); all are closed after the test."""
    contexts = []

    def make(**options: object):  # type: ignore[no-untyped-def]
        context = browser.new_context(**{"viewport": {"width": 1200, "height": 900}, **options})
        context.grant_permissions(["camera", "microphone"])
        context.set_default_timeout(15000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def run_axe(page) -> list[dict]:  # type: ignore[no-untyped-def]
    """Serious and critical accessibility violations on the current page, by axe-core."""
    _require(AXE.exists(), f"axe-core not installed at {AXE} (npm install axe-core)")
    # Evaluated over CDP rather than added as a <script> tag: the product's CSP (script-src 'self')
    # rightly refuses inline scripts, and CDP evaluation is exempt from it.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate("() => {\n" + AXE.read_text() + "\n}")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]

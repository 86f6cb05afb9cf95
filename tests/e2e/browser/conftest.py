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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from app.config import PROJECT_ROOT, Settings
from tests.e2e.conftest import BIN, process_env
from tests.e2e.test_make_run import free_port

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
ARTIFACTS = PROJECT_ROOT / "artifacts" / "browser"


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
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the process owns it until it exits)
        stack.processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/api/health", timeout=2).json().get("worker") == "ok":
                return stack
        except (requests.ConnectionError, ValueError):
            pass
        time.sleep(0.3)
    stack.stop()
    raise RuntimeError(f"the live stack did not become healthy; see {log_dir}")


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
        context = browser.new_context(viewport={"width": 1200, "height": 900}, **options)
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
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]

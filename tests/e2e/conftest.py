"""End-to-end fixtures: real processes (a Celery worker on real Redis, the whole app)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process use this test run's engines and queue."""
    return {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "CELERY_QUEUE": settings.celery_queue,
        "SECRET_KEY": settings.secret_key,
        "INSTANCE_PATH": str(settings.instance_path),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


@pytest.fixture(scope="module")
def celery_worker(app, settings: Settings) -> Iterator[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    """A real ``celery worker`` process consuming this run's queue."""
    from tasks.maintenance import ping

    worker = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "celery_worker",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--pool",
            "prefork",
        ],
        cwd=PROJECT_ROOT,
        env=process_env(settings),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ping.apply_async().get(timeout=5)
                break
            except Exception:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the celery worker did not start") from None
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

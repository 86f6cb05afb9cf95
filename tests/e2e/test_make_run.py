"""``make run`` with nothing configured: embedded engines, health 200 within 90 s, a killed worker
restarted, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from tests.e2e.make_run import make_run, processes_under


def worker_of(runner_pid: int) -> psutil.Process | None:
    for child in psutil.Process(runner_pid).children():
        try:
            if "worker" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.Error:
            continue
    return None


def test_make_run_serves_health_then_stops_everything(tmp_path: Path) -> None:
    with make_run(tmp_path / "make-run.log") as run:
        run.wait_healthy()
        assert processes_under(run.instance), "the embedded engines should be running under instance/"

        # A worker that dies (Celery can exit when Redis drops under it) is restarted.
        killed = worker_of(run.process.pid)
        killed.kill()
        deadline = time.monotonic() + 30
        replacement = None
        while time.monotonic() < deadline and replacement is None:
            time.sleep(0.5)
            candidate = worker_of(run.process.pid)
            replacement = candidate if candidate and candidate.pid != killed.pid else None
        assert replacement is not None, "the killed worker was not restarted"

        assert run.stop() == 0
        assert run.demo_login("seller")[0] == "demo-seller@example.com"
        assert "embedded PostgreSQL and Redis stopped" in run.output()
        deadline = time.monotonic() + 10
        while processes_under(run.instance) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_under(run.instance) == []

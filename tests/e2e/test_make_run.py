"""``make run`` with nothing configured: embedded engines, health 200 within 90 s, and Ctrl-C
leaves no process behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import requests

from app.config import PROJECT_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_under(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(path) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def worker_of(runner_pid: int) -> psutil.Process | None:
    for child in psutil.Process(runner_pid).children():
        try:
            if "worker" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.Error:
            continue
    return None


def test_make_run_serves_health_then_stops_everything(tmp_path: Path) -> None:
    # Unique per run: concurrent runs must not share embedded engines.
    instance = PROJECT_ROOT / "instance" / f"make-run-{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "INSTANCE_PATH": str(instance),
        "PORT": str(port),
        "CELERY_QUEUE": f"make-run-{port}",
    }
    runner = subprocess.Popen(
        [str(BIN / "python"), "-m", "app.runner"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = time.monotonic()
        status = None
        while time.monotonic() - started < 90 and runner.poll() is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code
                if status == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet, or busy starting: ask again
            time.sleep(0.5)
        if status != 200:
            if runner.poll() is None:
                runner.kill()
            output = runner.communicate(timeout=30)[0]
            raise AssertionError(f"health never answered 200 (runner exit {runner.returncode}):\n{output[-3000:]}")
        assert processes_under(instance), "the embedded engines should be running under instance/"

        # A worker that dies (Celery can exit when Redis drops under it) is restarted.
        killed = worker_of(runner.pid)
        killed.kill()
        deadline = time.monotonic() + 30
        replacement = None
        while time.monotonic() < deadline and replacement is None:
            time.sleep(0.5)
            candidate = worker_of(runner.pid)
            replacement = candidate if candidate and candidate.pid != killed.pid else None
        assert replacement is not None, "the killed worker was not restarted"

        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=60)
        assert runner.returncode == 0
        assert "demo-seller@example.com" in output
        assert "embedded PostgreSQL and Redis stopped" in output
        deadline = time.monotonic() + 10
        while processes_under(instance) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_under(instance) == []
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stdout and not runner.stdout.closed:
            runner.stdout.close()
        for proc in processes_under(instance):
            proc.kill()
        subprocess.run(["rm", "-rf", str(instance)], check=False)

"""``make run`` as the end-to-end tests start it: ``python -m app.runner`` (what ``make run`` runs
once its install step is done) with nothing configured but a private instance folder, port and
queue, so that concurrent runs never share embedded engines."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from app.config import PROJECT_ROOT
from tests.e2e.conftest import BIN


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


@dataclass
class MakeRun:
    process: subprocess.Popen[bytes]
    url: str
    instance: Path
    log: Path

    def output(self) -> str:
        """Everything the runner and its children printed so far."""
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 90) -> None:
        status = None
        started = time.monotonic()
        while time.monotonic() - started < timeout and self.process.poll() is None:
            try:
                status = requests.get(f"{self.url}/api/health", timeout=5).status_code
                if status == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet, or busy starting: ask again
            time.sleep(0.5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        tail = self.output()[-3000:]
        raise AssertionError(f"health never answered 200 (runner exit {self.process.returncode}):\n{tail}")

    def demo_login(self, role: str) -> tuple[str, str]:
        """(email, password) of the demo ``role`` ("seller" or "admin"), as ``make run`` printed them."""
        match = re.search(rf"^\s+{role}\s+(\S+)\s+password: (\S+)$", self.output(), re.MULTILINE)
        assert match, f"make run printed no {role} login:\n{self.output()[-2000:]}"
        return match.group(1), match.group(2)

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; the runner's exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


@contextmanager
def make_run(log: Path, **settings: str) -> Iterator[MakeRun]:
    """A running ``make run`` (``settings`` are extra environment variables); everything it started
    is gone afterwards."""
    instance = PROJECT_ROOT / "instance" / f"make-run-{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "INSTANCE_PATH": str(instance),
        "PORT": str(port),
        "CELERY_QUEUE": f"make-run-{port}",
        **settings,
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "app.runner"], cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    run = MakeRun(process, f"http://127.0.0.1:{port}", instance, log)
    try:
        yield run
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for proc in processes_under(instance):
            proc.kill()
        subprocess.run(["rm", "-rf", str(instance)], check=False)

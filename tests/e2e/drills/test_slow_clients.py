"""Drill (issue 16, finding 5): 40 slow clients from one address do not stop the site answering.

The documented production setup: gunicorn as the README's "Running in production" starts it
(one gthread worker, 8 threads), behind nginx with the shipped ``deploy/nginx/chatlink.conf``. Forty sockets
each send a request line and then one header line every 1.5 s, never finishing; meanwhile
``/api/health`` is asked five times through the front and must answer every time, and nginx must
drop the slow sockets once its header timeout is up. The same attack against gunicorn alone is
the control: it shows the attack starves an unprotected gunicorn, so the drill can tell.

Needs nginx (Debian's ``nginx-light``, installed by ``.ci/run``); skipped where it is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from app.config import PROJECT_ROOT
from tests.e2e.conftest import BIN
from tests.e2e.drills.conftest import Drill, drill_stack, wait_for
from tests.e2e.make_run import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
SHIPPED = PROJECT_ROOT / "deploy" / "nginx" / "chatlink.conf"
SLOW_CLIENTS = 40
HEADER_EVERY = 1.5  # seconds between two header lines of one slow client
HEALTH_CHECKS = 5
HEALTH_TIMEOUT = 2.0
HEADER_TIMEOUT = 10  # deploy/nginx/chatlink.conf's client_header_timeout
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # kept in the drill's scratch directory

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")


def front_config(scratch: Path, *, front_port: int, gunicorn_port: int) -> Path:
    """The shipped site file, pointed at this drill's ports, inside a minimal nginx.conf."""
    site = SHIPPED.read_text()
    for old, new in (
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{gunicorn_port};"),
        ("listen 80;", f"listen 127.0.0.1:{front_port};"),
    ):
        assert old in site, f"{SHIPPED} no longer has {old!r}: update this drill"
        site = site.replace(old, new)
    (scratch / "chatlink.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers may then use the scratch directory
    main = (
        f"{user}worker_processes 1;\npid {scratch}/nginx.pid;\nerror_log {scratch}/error.log info;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log {scratch}/access.log;\n"
        + "".join(f"  {kind}_temp_path {scratch}/{kind}_temp;\n" for kind in TEMP_PATHS)
        + f"  include {scratch}/chatlink.conf;\n}}\n"
    )
    path = scratch / "nginx.conf"
    path.write_text(main)
    return path


@contextlib.contextmanager
def nginx_front(drill: Drill) -> Iterator[int]:
    scratch = drill.scratch / "nginx"
    scratch.mkdir()
    port = free_port()
    config = front_config(scratch, front_port=port, gunicorn_port=drill.port)
    with open(drill.log_dir / "nginx.log", "ab") as log:
        process = subprocess.Popen(
            [str(NGINX), "-p", str(scratch), "-c", str(config), "-g", "daemon off;"], stdout=log, stderr=log
        )
    try:
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200,
            timeout=20,
            what="nginx in front of gunicorn",
        )
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            (drill.log_dir / "nginx-error.log").write_bytes((scratch / "error.log").read_bytes())


class SlowClients:
    """Sockets that send a request line, then one header line every ``HEADER_EVERY`` seconds."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = []
        self.closed_after: list[float] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET /api/health?slow={n} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            self.sockets.append(sock)
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        n = 0
        while not self._stop.wait(HEADER_EVERY):
            n += 1
            for sock in list(self.sockets):
                try:
                    sock.sendall(f"X-Slow-{n}: {'a' * 20}\r\n".encode())
                except OSError:  # the server dropped it
                    self.closed_after.append(time.monotonic() - self._started)
                    self.sockets.remove(sock)
                    sock.close()

    @property
    def still_open(self) -> int:
        return len(self.sockets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def answered(port: int) -> list[float | None]:
    """Ask /api/health ``HEALTH_CHECKS`` times, one a second: each answer's seconds, or None."""
    times: list[float | None] = []
    for _ in range(HEALTH_CHECKS):
        start = time.monotonic()
        try:
            ok = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=HEALTH_TIMEOUT).status_code == 200
        except requests.RequestException:
            ok = False
        times.append(round(time.monotonic() - start, 3) if ok else None)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
    return times


def start_gunicorn(drill: Drill) -> None:
    """gunicorn exactly as the README's production recipe runs it, bound to loopback for the front."""
    command = [str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{drill.port}"]
    command += ["--worker-class", "gthread", "--threads", "8"]
    with open(drill.log_dir / "web.log", "ab") as log:
        drill.processes["web"] = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=drill.env, stdout=log, stderr=log, start_new_session=True
        )
    drill.wait_healthy(timeout=60)


def test_forty_slow_clients_do_not_stop_health_answering_behind_the_front() -> None:
    with drill_stack("slow-clients") as drill:
        start_gunicorn(drill)

        # Control: the same attack straight at gunicorn starves it.
        attack = SlowClients(drill.port, SLOW_CLIENTS)
        time.sleep(1)
        unprotected = answered(drill.port)
        attack.close()
        drill.wait_healthy(timeout=30)

        with nginx_front(drill) as front:
            attack = SlowClients(front, SLOW_CLIENTS)
            time.sleep(1)
            protected = answered(front)
            open_during = attack.still_open
            wait_for(lambda: attack.still_open == 0, timeout=HEADER_TIMEOUT + 8, what="nginx to drop the slow clients")
            dropped_after = max(attack.closed_after)
            attack.close()

        print(
            f"\n{SLOW_CLIENTS} slow clients, one header line every {HEADER_EVERY} s:"
            f"\n  gunicorn alone:  /api/health answered {sum(t is not None for t in unprotected)}/{HEALTH_CHECKS} "
            f"(seconds: {unprotected})"
            f"\n  behind nginx:    /api/health answered {sum(t is not None for t in protected)}/{HEALTH_CHECKS} "
            f"(seconds: {protected}); {open_during} slow sockets were open meanwhile, all dropped by "
            f"{dropped_after:.1f} s"
        )
        assert all(t is not None for t in protected), protected
        assert open_during == SLOW_CLIENTS, "the slow clients must still be connected while health is asked"
        assert dropped_after <= HEADER_TIMEOUT + HEADER_EVERY * 2 + 1
        assert sum(t is not None for t in unprotected) <= 1, (
            f"the control did not starve gunicorn ({unprotected}): the drill no longer shows the attack"
        )

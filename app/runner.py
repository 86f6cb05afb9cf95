"""``make run``: the whole product on one machine, until Ctrl-C.

Starts the embedded PostgreSQL and Redis for any URL left unset, migrates, seeds the demo
accounts, then runs web (gunicorn), worker and beat as child processes sharing those engines.
On Ctrl-C (or SIGTERM) it stops the children, then the embedded engines it started, so nothing
is left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from app.config import PROJECT_ROOT, ConfigError, Settings, metrics_dir
from app.engines import resolve_engines, stop_embedded
from app.startup import check_engines

BIN = Path(sys.executable).parent
HOST, PORT = "127.0.0.1", os.environ.get("PORT", "5000")


def main() -> int:
    try:
        configured = Settings.from_env()
    except ConfigError as error:
        print(f"chatlink: {error}", file=sys.stderr)
        return 1
    started_embedded = configured.database_url is None or configured.redis_url is None
    # Per-process metric files of an earlier run describe processes that are gone.
    shutil.rmtree(metrics_dir(), ignore_errors=True)
    settings = None
    children: list[subprocess.Popen[bytes]] = []
    try:
        settings = resolve_engines(configured)
        check_engines(settings)
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            # Links in emails and the built-in checkout's webhooks must reach this port.
            "APP_URL": os.environ.get("APP_URL") or f"http://{HOST}:{PORT}",
        }
        _step("migrating", [str(BIN / "alembic"), "upgrade", "head"], env)
        print("\nDemo accounts:", flush=True)
        _step(None, [str(BIN / "flask"), "--app", "wsgi", "chatlink", "seed-demo"], env)
        children = _start_children(env, settings)
        print(f"\nChatLink is running at http://{HOST}:{PORT}  (Ctrl-C to stop)\n", flush=True)
        _wait(children, env)
        return 0
    except ConfigError as error:
        print(f"chatlink: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"chatlink: {' '.join(map(str, error.cmd[:3]))} failed (exit {error.returncode})", file=sys.stderr)
        return 1
    finally:
        _stop(children)
        if started_embedded and settings is not None:
            stop_embedded(configured)
            print("embedded PostgreSQL and Redis stopped", flush=True)


def _step(label: str | None, command: list[str], env: dict[str, str]) -> None:
    if label:
        print(f"{label}...", flush=True)
    subprocess.run(command, env=env, cwd=PROJECT_ROOT, check=True)


def _commands(settings: Settings) -> list[list[str]]:
    beat_schedule = settings.instance_path / "celerybeat-schedule"
    return [
        [
            str(BIN / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"{HOST}:{PORT}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--access-logfile",
            "-",
        ],
        [str(BIN / "celery"), "-A", "celery_worker", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        [str(BIN / "celery"), "-A", "celery_worker", "beat", "--loglevel", "INFO", "--schedule", str(beat_schedule)],
    ]


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Each child leads its own process group, so Ctrl-C reaches them only through us, in order.
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, start_new_session=True)


def _start_children(env: dict[str, str], settings: Settings) -> list[subprocess.Popen[bytes]]:
    return [_spawn(command, env) for command in _commands(settings)]


def _wait(children: list[subprocess.Popen[bytes]], env: dict[str, str]) -> None:
    """Until Ctrl-C. A child that dies is restarted, as a Procfile platform would (a Celery worker
    can exit when Redis drops under it); one that keeps dying stops the whole run."""
    stop = {"now": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    restarts: list[float] = []
    while not stop["now"]:
        for index, child in enumerate(children):
            if child.poll() is None:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 5:
                print(f"chatlink: {child.args!r} keeps exiting ({child.returncode}); stopping", file=sys.stderr)
                return
            print(f"chatlink: {child.args!r} exited ({child.returncode}); restarting it", file=sys.stderr)
            children[index] = _spawn([str(part) for part in cast(list[str], child.args)], env)
        time.sleep(0.5)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


if __name__ == "__main__":
    sys.exit(main())

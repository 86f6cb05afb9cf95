"""Fault drills: the whole product as real processes on PRIVATE engines that a drill may stop,
kill and restart.

Each drill gets its own embedded PostgreSQL and Redis under ``instance/drill-<id>/`` (unix sockets
only, so nothing needs the network), a database built by Alembic, and gunicorn, a Celery worker
and beat started the way ``tests/e2e/browser/conftest.py::start_stack`` starts them. Every process
runs in its own session, so a drill can SIGKILL a worker together with its pool children. Logs go
to ``artifacts/drills/<drill>/<run>/``; the path is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis as redis_lib
import requests
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from app.config import PROJECT_ROOT, Settings
from app.engines import EmbeddedPostgres, EmbeddedRedis, _socket_dir_from_uri
from tests.conftest import alembic_config
from tests.e2e.conftest import BIN
from tests.e2e.make_run import free_port

ARTIFACTS = PROJECT_ROOT / "artifacts" / "drills"
DATABASE = "chatlink"
# As root, pgserver runs PostgreSQL as its own system user; pg_ctl must run as that user too.
PG_USER = "pgserver" if os.geteuid() == 0 else None
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    detail: Callable[[], object] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` (and what
    ``detail`` says about the state of things) after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # an engine being restarted is expected to refuse for a while
            last_error = error
        if time.monotonic() > deadline:
            state = ""
            if detail is not None:
                try:
                    state = f"; state: {detail()}"
                except Exception as error:
                    state = f"; state unknown: {error!r}"
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r}{state})"
            )
        time.sleep(interval)


@dataclass
class Drill:
    """One ChatLink on private engines. Processes are started by role (web, worker, beat)."""

    name: str
    scratch: Path
    log_dir: Path
    env: dict[str, str]
    pg: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str
    port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    crashes: list[tuple[str, int]] = field(default_factory=list)  # (process, exit code) restarted by supervise()
    _engine: Engine | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _restarting: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        """The settings the product's processes run with (for in-process helpers)."""
        return Settings.from_env(self.env, dotenv=False)

    # Processes.

    def start(
        self, role: str, *, name: str | None = None, port: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a web, worker or beat process. ``port`` (web) and ``env`` (merged over the
        drill's) make a second instance of a role, as on a second machine."""
        name = name or role
        commands = {
            "web": [
                *(str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port or self.port}"),
                *("--workers", "2", "--worker-class", "gthread", "--threads", "8", "--graceful-timeout", "5"),
                *(("--access-logfile", "-") if port else ()),
            ],
            "worker": [
                *(str(BIN / "celery"), "-A", "celery_worker", "worker", "--loglevel", "INFO"),
                *("--concurrency", "2", "--without-gossip", "--without-mingle", "--hostname", f"{name}@drill"),
            ],
            "beat": [
                *(str(BIN / "celery"), "-A", "celery_worker", "beat", "--loglevel", "INFO"),
                # One schedule file per beat, as each machine has its own.
                *("--schedule", str(self.scratch / f"celerybeat-schedule-{name}")),
            ],
        }
        # The child keeps its own descriptor of the log; the parent's copy is closed at once.
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                commands[role],
                cwd=PROJECT_ROOT,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        for role in ("web", "worker", "beat"):
            self.start(role)
        self.wait_healthy(worker=True, timeout=90)

    def supervise(self) -> None:
        """Restart any process that exits on its own, as a platform running the Procfile would
        (``crashes`` records each one). A process stopped by ``kill`` is not restarted."""

        def watch() -> None:
            while not self._stopping.wait(0.2):
                for name, process in list(self.processes.items()):
                    if process.poll() is not None and self.processes.get(name) is process:
                        self.crashes.append((name, process.returncode))
                        # A platform backs off too; a process refuses to start while an engine is down.
                        if self._stopping.wait(1.0):
                            return
                        with self._restarting:
                            if not self._stopping.is_set():
                                self.start(name.split("-")[0], name=name)

        threading.Thread(target=watch, name=f"supervise-{self.name}", daemon=True).start()

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the process and everything it started (a Celery pool's children too)."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_processes(self) -> None:
        with self._restarting:
            self._stopping.set()
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def health(self) -> tuple[int, dict[str, Any]]:
        response = requests.get(f"{self.url}/api/health", timeout=5)
        return response.status_code, response.json()

    def wait_healthy(self, *, worker: bool = False, timeout: float = 60) -> None:
        def healthy() -> bool:
            status, body = self.health()
            return status == 200 and (not worker or body.get("worker") == "ok")

        wait_for(healthy, timeout=timeout, what="a healthy stack", interval=0.3, detail=self.recent_logs)

    # Engines.

    def stop_redis(self) -> None:
        self.redis.stop()
        wait_for(lambda: not self.redis._answers(), timeout=15, what="redis to stop")

    def start_redis(self) -> None:
        self.redis.start()

    def stop_postgres(self) -> None:
        self.pg.stop()

    def start_postgres(self) -> None:
        """Start the stopped server again on the same socket directory, so every process's
        DATABASE_URL stays valid. (``pgserver.get_server`` would hand back its cached handle of
        the stopped server instead of starting it.)"""
        from pgserver._commands import pg_ctl

        socket_dir = _socket_dir_from_uri(self.database_url)
        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pg.datadir / "log"), "start"],
            pgdata=self.pg.datadir,
            user=PG_USER,
            timeout=30,
        )

    # The database, read from the test.

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # No pool: a connection never outlives a PostgreSQL restart.
            self._engine = create_engine(self.database_url, poolclass=NullPool)
        return self._engine

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def redis_client(self) -> redis_lib.Redis:
        return redis_lib.Redis(unix_socket_path=str(self.redis.socket_path), decode_responses=True)

    def logs(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def recent_logs(self, lines: int = 4) -> dict[str, list[str]]:
        """The last lines each process logged (sweeps and heartbeats left out), for failure messages."""
        noise = ('"msg": "sweep"', "tasks.maintenance.sweep[", "Sending due task")
        recent = {}
        for path in sorted(self.log_dir.glob("*.log")):
            kept = [
                line[:240]
                for line in path.read_text(errors="replace").splitlines()
                if not any(n in line for n in noise)
            ]
            recent[path.stem] = kept[-lines:]
        return recent

    def worker_crashes(self) -> int:
        """Workers that stopped on an "Unrecoverable error" (not a start-up refusal), from the logs."""
        return sum(
            path.read_text(errors="replace").count("Unrecoverable error") for path in self.log_dir.glob("worker*.log")
        )

    def task_retries(self, task: str) -> int:
        """How many times a worker scheduled a Celery retry of ``task`` (from the worker logs)."""
        lines = (
            line for path in self.log_dir.glob("worker*.log") for line in path.read_text(errors="replace").splitlines()
        )
        return sum(1 for line in lines if f"Task {task}[" in line and "] retry: Retry in" in line)

    def tasks_ahead_of_their_commit(self) -> int:
        """Email tasks that found no row: published before the transaction that wrote it had
        committed (or after it rolled back). Either way a side effect escaped its transaction."""
        return sum(
            path.read_text(errors="replace").count('"outbox email not found"') for path in self.log_dir.glob("*.log")
        )

    def statuses(self, table: str) -> dict[str, int]:
        """Rows of ``table`` by status, for failure messages and the drills' final counts."""
        return dict(self.rows(f"SELECT status, count(*) FROM {table} GROUP BY status"))  # noqa: S608 (constants)


@contextlib.contextmanager
def drill_stack(name: str, **overrides: str) -> Iterator[Drill]:
    """Private engines, a migrated database and the settings for a stack (not yet started)."""
    scratch = PROJECT_ROOT / "instance" / f"drill-{uuid.uuid4().hex[:8]}"
    # Logs are written in the run's own scratch directory and copied to artifacts/ at the end.
    log_dir = scratch / "logs"
    log_dir.mkdir(parents=True)
    pg = EmbeddedPostgres(scratch / "postgres")
    embedded_redis = EmbeddedRedis(scratch / "redis")
    drill: Drill | None = None
    try:
        database_url = pg.start(database=DATABASE)
        command.upgrade(alembic_config(database_url), "head")
        redis_url = embedded_redis.start()
        port = free_port()
        env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/root",
            "APP_ENV": "test",
            "APP_URL": f"http://127.0.0.1:{port}",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_QUEUE": f"drill-{name}",
            "SECRET_KEY": f"drill-secret-{uuid.uuid4().hex}",
            "STRIPE_WEBHOOK_SECRET": f"whsec_drill_{uuid.uuid4().hex}",
            "INSTANCE_PATH": str(scratch / "instance"),
            "LOG_LEVEL": "INFO",
            "SWEEP_INTERVAL_SECONDS": "1",
            # As behind a load balancer: each simulated buyer has its own address (X-Forwarded-For),
            # so per-address rate limits see many buyers rather than one.
            "TRUSTED_PROXIES": "1",
            **overrides,
        }
        drill = Drill(name, scratch, log_dir, env, pg, embedded_redis, database_url, port)
        yield drill
    finally:
        if drill is not None:
            drill.stop_processes()
            if drill._engine is not None:
                drill._engine.dispose()
        _discard(embedded_redis, pg)
        print(f"\ndrill {name}: logs in {_keep_logs(log_dir, name, scratch.name)}")
        shutil.rmtree(scratch, ignore_errors=True)


def _keep_logs(log_dir: Path, name: str, run: str) -> Path:
    """Copy a run's logs to artifacts/drills/<name>/<run>/; runs of other sessions may overlap
    with this one, so each keeps its own folder, and folders older than a day are pruned."""
    kept = ARTIFACTS / name / run
    shutil.copytree(log_dir, kept, dirs_exist_ok=True)
    for old in (ARTIFACTS / name).iterdir():
        if old != kept and time.time() - old.stat().st_mtime > 86400:
            shutil.rmtree(old, ignore_errors=True)
    return kept


def _discard(embedded_redis: EmbeddedRedis, pg: EmbeddedPostgres) -> None:
    """Stop both engines without saving anything: their data is thrown away next."""
    from pgserver._commands import pg_ctl

    pidfile = embedded_redis.directory / "redis.pid"
    # Only while our server answers on our socket is the pid file surely its own.
    if pidfile.exists() and embedded_redis._answers():
        # SIGKILL rather than SHUTDOWN, which takes seconds on a busy disk even with NOSAVE.
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    if (pg.datadir / "postmaster.pid").exists():
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pg.datadir, user=PG_USER, timeout=30)


@pytest.fixture
def make_drill() -> Iterator[Callable[..., Drill]]:
    """Start a drill stack: ``make_drill("name", CALL_DURATION_SECONDS="8")``; torn down after the test."""
    with contextlib.ExitStack() as stack:

        def make(name: str, **overrides: str) -> Drill:
            return stack.enter_context(drill_stack(name, **overrides))

        yield make

"""Throughput and latency of the paywall next to the health route, under gunicorn, on loopback.

    .venv/bin/python bench/paywall.py [--duration 8] [--rounds 2] [--connections 8] [--workers 2]

Engines: with DATABASE_URL set, a scratch database is created on that server (and dropped at
the end); otherwise a private embedded PostgreSQL is started in a temporary directory. Redis is
REDIS_URL or an embedded one. The app is migrated, a live seller with a photo and ratings is
seeded, gunicorn is started as in the Procfile (gthread), and a thread-pool client with one
keep-alive connection per thread drives each route in turn for a bounded time and request
count. Rounds alternate between the two routes so that both see the same machine. The goal is
that the paywall keeps at least half of the health route's throughput.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from app.config import Settings  # noqa: E402
from app.engines import ScratchEngines  # noqa: E402

BIN = Path(sys.executable).parent
SLUG = "bench-seller"
GOAL = 0.5


@dataclass
class Phase:
    route: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float = 0.0  # seconds of CPU the gunicorn processes used during the phase

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu / self.requests * 1000 if self.requests else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(latencies: list[float], q: float) -> float:
    """The ``q`` quantile of latencies in seconds, in milliseconds (NaN for none)."""
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# --- Engines and app ------------------------------------------------------------------------


def bench_engines(scratch: Path) -> ScratchEngines:
    """A scratch database (and, without REDIS_URL, a private Redis) for the run."""
    return ScratchEngines(
        scratch,
        f"chatlink_bench_{uuid.uuid4().hex[:8]}",
        database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"),
    )


def prepare(env: dict[str, str]) -> None:
    """Migrate the scratch database and seed one live seller with a photo and five ratings."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", env["DATABASE_URL"].replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")

    from PIL import Image

    from app import create_app
    from app.db import db, utcnow
    from app.integrations.storage import storage_for
    from app.services.accounts import create_user
    from app.services.photos import set_profile_photo
    from app.services.profiles import ProfileChanges, save_profile

    settings = Settings.from_env(env, dotenv=False)
    app = create_app(settings)
    photo = io.BytesIO()
    Image.new("RGB", (800, 800), (90, 80, 200)).save(photo, format="JPEG")
    with app.app_context(), db.session_scope() as session:
        user = create_user(session, "bench-seller@example.com", "bench-password-123", verified_at=utcnow())
        bio = "I review pull requests and talk architecture.\nFive minutes, straight answers. " * 4
        changes = ProfileChanges(display_name="Bench Seller", slug=SLUG, bio=bio[:500], price_cents=2500)
        profile = save_profile(session, user_id=user.id, changes=changes, currency="usd")
        set_profile_photo(session, profile_id=profile.id, data=photo.getvalue(), storage=storage_for(settings))
        add_ratings(session, user.id, (5, 5, 4, 5, 4))
    db.engine.dispose()


def add_ratings(session, seller_id: uuid.UUID, stars: tuple[int, ...]) -> None:  # type: ignore[no-untyped-def]
    """Completed, rated calls, so the page shows (and the query computes) a rating summary."""
    from app.db import utcnow
    from app.models import CallRequest, PaymentState, Rating, RequestStatus, Transaction

    for n, value in enumerate(stars):
        tx = Transaction(
            seller_id=seller_id,
            buyer_email=f"buyer{n}@example.org",
            stripe_checkout_session_id=f"cs_bench_{n}",
            gross_cents=2500,
            platform_fee_cents=500,
            net_cents=2000,
            currency="usd",
            payment_state=PaymentState.CAPTURED,
        )
        session.add(tx)
        session.flush()
        request = CallRequest(
            seller_id=seller_id,
            transaction_id=tx.id,
            buyer_email=tx.buyer_email,
            status=RequestStatus.COMPLETED,
            expires_at=utcnow(),
        )
        session.add(request)
        session.flush()
        session.add(Rating(call_request_id=request.id, seller_id=seller_id, stars=value))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited during start-up")
        try:
            if fetch(port, "/api/health")[0] == 200 and fetch(port, f"/u/{SLUG}")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


def fetch(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- Load -----------------------------------------------------------------------------------


def process_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and its children (the gunicorn master and workers), read
    from /proc; 0 where /proc is unavailable."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    pids = [root_pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split()]
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return 0.0
    return total


def drive(port: int, route: str, *, connections: int, seconds: float, max_requests: int) -> Phase:
    """``connections`` threads, each with its own keep-alive connection, until the time or the
    request budget runs out."""
    lock = threading.Lock()
    budget = [max_requests]
    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < stop_at:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            started = time.perf_counter()
            try:
                conn.request("GET", route)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            if ok:
                mine.append(time.perf_counter() - started)
            else:
                failed += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        for future in [pool.submit(worker) for _ in range(connections)]:
            future.result()
    return Phase(route, len(latencies), errors[0], time.perf_counter() - began, latencies)


def measured(server_pid: int, port: int, route: str, **load: object) -> Phase:
    before = process_cpu_seconds(server_pid)
    phase = drive(port, route, **load)  # type: ignore[arg-type]
    phase.server_cpu = process_cpu_seconds(server_pid) - before
    return phase


def merge(phases: list[Phase]) -> Phase:
    return Phase(
        phases[0].route,
        sum(p.requests for p in phases),
        sum(p.errors for p in phases),
        sum(p.seconds for p in phases),
        [x for p in phases for x in p.latencies],
        sum(p.server_cpu for p in phases),
    )


def report(health: Phase, paywall: Phase, page_bytes: int) -> bool:
    header = f"{'route':<22}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"\n{header}{'server CPU ms/req':>19}")
    for phase in (health, paywall):
        print(
            f"{phase.route:<22}{phase.requests:>10}{phase.errors:>8}{phase.rps:>10.0f}"
            f"{phase.percentile(0.50):>9.2f}{phase.percentile(0.99):>9.2f}{phase.cpu_ms_per_request:>19.2f}"
        )
    ratio = paywall.rps / health.rps if health.rps else 0.0
    verdict = "meets" if ratio >= GOAL else "MISSES"
    print(f"\npaywall/health throughput ratio: {ratio:.2f} ({verdict} the goal of >= {GOAL})")
    print(f"paywall page: {page_bytes} bytes of HTML")
    return ratio >= GOAL


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per route per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per route")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request cap per route per round")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chatlink-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        engines = bench_engines(scratch)
        try:
            database_url, redis_url = engines.start()
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/root"),
                "APP_ENV": "development",
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:6]}",
                "INSTANCE_PATH": str(scratch / "instance"),
                "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
                "LOG_LEVEL": "WARNING",
            }
            prepare(env)
            return 0 if run(env, args) else 1
        finally:
            engines.stop()


def run(env: dict[str, str], args: argparse.Namespace) -> bool:
    port = free_port()
    server = start_gunicorn(env, port, args.workers, args.threads)
    try:
        print(
            f"gunicorn: {args.workers} workers x {args.threads} threads on 127.0.0.1:{port}; "
            f"client: {args.connections} keep-alive connections, {args.rounds} x {args.duration:.0f} s per route"
        )
        page_bytes = len(fetch(port, f"/u/{SLUG}")[1])
        # Warm both routes (imports, template compilation, connection pools).
        for route in ("/api/health", f"/u/{SLUG}"):
            drive(port, route, connections=args.connections, seconds=1.0, max_requests=2000)
        load = {"connections": args.connections, "seconds": args.duration, "max_requests": args.max_requests}
        health_runs, paywall_runs = [], []
        for _ in range(args.rounds):
            health_runs.append(measured(server.pid, port, "/api/health", **load))
            paywall_runs.append(measured(server.pid, port, f"/u/{SLUG}", **load))
        return report(merge(health_runs), merge(paywall_runs), page_bytes)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())

"""How late does a call end? The hard stop, measured through the real stack.

    .venv/bin/python bench/call_end.py [--calls 50] [--duration 5] [--sweep 5]

With CALL_DURATION_SECONDS=5 and the Daily adapter pointed at a local fake Daily (an http.server
thread in this process, which records when each room is deleted), it runs the product as in the
Procfile (gunicorn, one Celery worker, beat) on this run's own database and queue, then:

1. accepts ``--calls`` paid requests through the requests service (the worker captures and
   provisions each Daily room), and plays every call through the API as the two browsers would:
   ``POST /api/video/join`` for both parties, then ``presence: connected`` for both (a hint for
   a Daily room), and Daily's ``participant.joined`` webhook for both, signed as Daily signs,
   which starts the clock once the worker has processed it. It waits until every call is
   COMPLETED and its room deleted, and prints the lateness of ``ended_at`` and of the room's
   deletion after ``ends_at``: p50, p99, max.
   Goal: p99 under 1 s, max under 2 s.
2. does it again, but SIGKILLs the worker right after the calls start (losing the ETA tasks it
   held) and starts a new one at once: every call must still end, within the sweep interval
   plus 1 s (the beat sweep ends what the lost timers did not).

Engines: with DATABASE_URL set, a scratch database is created on that server (dropped at the
end); otherwise a private embedded PostgreSQL is started in a temporary directory. Redis is
REDIS_URL or an embedded one.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from paywall import bench_engines  # noqa: E402 (the benchmarks share their scratch engines)
from sqlalchemy import select  # noqa: E402

from app.config import Settings  # noqa: E402
from tests.fakes.daily_api import WEBHOOK_SECRET, FakeDaily  # noqa: E402

BIN = Path(sys.executable).parent
SECRET_KEY = "bench-secret-key-" + "x" * 32
DAILY_KEY = "bench-daily-key"


# --- Engines and processes ------------------------------------------------------------------


class Processes:
    """web, worker and beat, each in its own process group (so a kill reaches its children)."""

    def __init__(self, env: dict[str, str], scratch: Path, port: int):
        self.env, self.scratch, self.port = env, scratch, port
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.scratch / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        return subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True)

    def start_web(self) -> None:
        self.web = self._spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "wsgi:app",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "8",
            ],
        )

    def start_worker(self) -> None:
        self.worker = self._spawn(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "celery_worker",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                self.env["WORKER_CONCURRENCY"],
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )

    def start_beat(self) -> None:
        self.beat = self._spawn(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "celery_worker",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(self.scratch / "celerybeat-schedule"),
            ],
        )

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.web):
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"call_end: timed out waiting for {what}")
        time.sleep(interval)


def wait_for_worker() -> None:
    from tasks.maintenance import ping

    deadline = time.monotonic() + 60
    while True:
        try:
            ping.apply_async().get(timeout=5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit("call_end: the celery worker did not start") from None


def web_is_up(base: str) -> bool:
    try:
        return requests.get(base + "/", timeout=1).status_code == 200
    except requests.RequestException:
        return False


# --- The calls ------------------------------------------------------------------------------


def seed_seller():  # type: ignore[no-untyped-def]
    from app.db import db, utcnow
    from app.models import Profile, Role, User

    with db.session_scope() as session:
        seller = User(
            email=f"bench-{uuid.uuid4().hex[:6]}@example.com",
            password_hash="!",  # no password: the seller never logs in here  # noqa: S106
            role=Role.SELLER,
            email_verified_at=utcnow(),
        )
        session.add(seller)
        session.flush()
        session.add(Profile(user_id=seller.id, slug=f"bench-{uuid.uuid4().hex[:8]}", display_name="Bench Seller"))
        return seller.id


def accepted_calls(seller_id, count: int) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """Paid requests accepted through the requests service: its capture task, then the room
    task, run on the worker and make each Daily room."""
    from app.db import db, utcnow
    from app.models import CallRequest, PaymentState, RequestStatus, Transaction
    from app.services.lifecycle.decisions import accept_request

    ids = []
    with db.session_scope() as session:
        for n in range(count):
            tag = uuid.uuid4().hex[:12]
            transaction = Transaction(
                seller_id=seller_id,
                buyer_email=f"buyer{n}@example.org",
                stripe_checkout_session_id=f"cs_bench_{tag}",
                stripe_payment_intent_id=f"pi_bench_{tag}",
                gross_cents=1000,
                platform_fee_cents=200,
                net_cents=800,
                currency="usd",
                payment_state=PaymentState.CAPTURED,
                captured_at=utcnow(),
            )
            call = CallRequest(
                seller_id=seller_id,
                transaction=transaction,
                buyer_email=transaction.buyer_email,
                status=RequestStatus.PENDING,
                expires_at=utcnow() + timedelta(days=1),
            )
            session.add(call)
            session.flush()
            ids.append(call.id)
    for call_id in ids:
        with db.session_scope() as session:
            accept_request(session, call_id, seller_id=seller_id, now=utcnow(), join_window_seconds=900)
    return ids


def load(ids: list[uuid.UUID]):  # type: ignore[no-untyped-def]
    from app.db import db
    from app.models import CallRequest

    with db.session_scope() as session:
        rows = session.scalars(select(CallRequest).where(CallRequest.id.in_(ids))).all()
        session.expunge_all()
        return rows


def completed(ids: list[uuid.UUID]) -> int:
    from sqlalchemy import func

    from app.db import db
    from app.models import CallRequest, RequestStatus

    with db.session_scope() as session:
        query = select(func.count()).where(CallRequest.id.in_(ids), CallRequest.status == RequestStatus.COMPLETED)
        return session.scalar(query) or 0


def play(base: str, call, fake: FakeDaily) -> None:  # type: ignore[no-untyped-def]
    """What the two pages do (join, report presence) and what Daily then says (both joined): the
    webhook, processed by the worker, starts the clock."""
    from app.services.calls import join_token

    http = requests.Session()
    tokens = {party: join_token(SECRET_KEY, call, party) for party in ("seller", "buyer")}

    def post(path: str, party: str, **extra: object) -> dict:
        body = {
            "requestId": str(call.id),
            "token": tokens[party],
            "clientId": f"bench-{party}-{call.id.hex[:8]}",
            **extra,
        }
        response = http.post(f"{base}/api/video/{path}", json=body, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"{path} for the {party}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    post("join", "seller")
    post("join", "buyer")
    for party in ("buyer", "seller"):
        post("presence", party, state="connected")
        evt = fake.joined(call.room_name, party, f"bench-{party}-{call.id.hex}", time.time())
        if fake.deliver(f"{base}/api/webhooks/daily", evt) != 200:
            raise RuntimeError("Daily's webhook was refused")
    deadline = time.monotonic() + 30
    while not post("presence", "seller", state="connected")["startedAt"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the call did not start")
        time.sleep(0.2)


@dataclass
class Result:
    label: str
    ended: list[float]
    deleted: list[float]
    ended_by: Counter

    @staticmethod
    def stats(values: list[float]) -> str:
        ordered = sorted(values)

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return f"p50 {rank(0.5):6.3f} s   p99 {rank(0.99):6.3f} s   max {ordered[-1]:6.3f} s"

    def report(self) -> None:
        print(f"\n{self.label}")
        print(f"  ended_at after ends_at:      {self.stats(self.ended)}")
        print(f"  room deleted after ends_at:  {self.stats(self.deleted)}")
        print(f"  ended by: {dict(self.ended_by)}")


def run_round(
    label: str,
    base: str,
    seller_id,
    fake: FakeDaily,
    count: int,
    duration: int,  # type: ignore[no-untyped-def]
    processes: Processes | None = None,
) -> Result:

    ids = accepted_calls(seller_id, count)
    wait_until(lambda: all(c.room_ready_at for c in load(ids)), 60, "the rooms to be provisioned", 0.5)
    calls = load(ids)
    with ThreadPoolExecutor(max_workers=25) as pool:
        list(pool.map(lambda call: play(base, call, fake), calls))
    if processes is not None:
        # Right after the calls start: the worker dies with every ETA timer it held.
        processes.kill_worker()
        processes.start_worker()
        print(
            f"  worker SIGKILLed and restarted {time.time() - max(c.room_ready_at.timestamp() for c in calls):.1f} s "
            "after the last room was ready",
            flush=True,
        )

    room_names = {c.room_name for c in calls}

    def done() -> bool:
        # Cheap on purpose: the fake Daily shares this process, and its timestamps must not wait.
        if not room_names <= fake.deleted.keys():
            return False
        return completed(ids) == len(ids)

    wait_until(done, duration + 60, "every call to end", 0.25)
    rows = load(ids)
    return Result(
        label,
        ended=[(r.ended_at - r.ends_at).total_seconds() for r in rows],
        deleted=[fake.deleted[r.room_name] - r.ends_at.timestamp() for r in rows],
        ended_by=Counter(r.ended_by for r in rows),
    )


# --- Main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--duration", type=int, default=5, help="CALL_DURATION_SECONDS")
    parser.add_argument("--sweep", type=int, default=5, help="SWEEP_INTERVAL_SECONDS")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="worker processes (the Procfile's WORKER_CONCURRENCY)"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="chatlink-bench-"))
    engines = bench_engines(scratch)
    fake = FakeDaily(api_key=DAILY_KEY).start()
    processes = None
    try:
        database_url, redis_url = engines.start()
        port = free_port()
        env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "APP_ENV": "development",
            "APP_URL": f"http://127.0.0.1:{port}",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            "INSTANCE_PATH": str(scratch / "instance"),
            "LOG_LEVEL": "WARNING",
            "CALL_DURATION_SECONDS": str(args.duration),
            "SWEEP_INTERVAL_SECONDS": str(args.sweep),
            "DAILY_API_KEY": DAILY_KEY,
            "DAILY_API_BASE": fake.url,
            "DAILY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "WORKER_CONCURRENCY": str(args.concurrency),
        }
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
        config.attributes["configure_logger"] = False
        command.upgrade(config, "head")

        from app import create_app

        app = create_app(Settings.from_env(env, dotenv=False))
        processes = Processes(env, scratch, port)
        processes.start_web()
        processes.start_worker()
        processes.start_beat()
        base = f"http://127.0.0.1:{port}"
        with app.app_context():
            wait_until(lambda: web_is_up(base), 60, "gunicorn")
            wait_for_worker()
            seller_id = seed_seller()
            print(
                f"call_end: {args.calls} calls per run, CALL_DURATION_SECONDS={args.duration}, "
                f"SWEEP_INTERVAL_SECONDS={args.sweep}, Daily adapter at a local fake ({fake.url})"
            )
            healthy = run_round("run 1: worker up", base, seller_id, fake, args.calls, args.duration)
            healthy.report()
            print("\nrun 2: the worker is SIGKILLed right after the calls start", flush=True)
            killed = run_round(
                "run 2: worker SIGKILLed and restarted", base, seller_id, fake, args.calls, args.duration, processes
            )
            killed.report()

        def p99(values: list[float]) -> float:
            return sorted(values)[max(0, math.ceil(0.99 * len(values)) - 1)]

        goal_1 = p99(healthy.ended) < 1 and max(healthy.ended) < 2
        goal_1_rooms = p99(healthy.deleted) < 1 and max(healthy.deleted) < 2
        bound = args.sweep + 1
        goal_2 = len(killed.ended) == args.calls and max(killed.ended) <= bound
        print(f"\ngoal run 1, ended_at p99 < 1 s and max < 2 s: {'met' if goal_1 else 'MISSED'}")
        print(f"           room deletion p99 < 1 s and max < 2 s: {'met' if goal_1_rooms else 'MISSED'}")
        print(f"goal run 2, every call ended within {bound} s of ends_at: {'met' if goal_2 else 'MISSED'}")
        print(f"           rooms deleted within {bound} s: {'yes' if max(killed.deleted) <= bound else 'no'}")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        return 0 if goal_1 and goal_2 else 1
    finally:
        if processes is not None:
            processes.stop()
        fake.stop()
        engines.stop()


if __name__ == "__main__":
    sys.exit(main())

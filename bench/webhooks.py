"""Webhook ingest and processing under load: gunicorn plus Celery workers, on loopback.

    .venv/bin/python bench/webhooks.py [--events 2000] [--duplicates 0.2] [--senders 32]
                                       [--workers 2] [--worker-concurrency 1] [--worker-pool prefork]
                                       [--web-workers 2] [--web-threads 8] [--worker-nice 0]
                                       [--staged] [--no-floor]

Engines: with DATABASE_URL set, a scratch database is created on that server (and dropped at the
end); otherwise a private embedded PostgreSQL is started in a temporary directory. Redis is
REDIS_URL or an embedded one; the run uses its own Celery queue and key namespace.

The scratch database is migrated and seeded with one live seller and one open Checkout per
unique event; the built-in gateway's state (a completed session with a PaymentIntent on hold)
is seeded in Redis for each, because the handler re-fetches the session exactly as it would from
Stripe. Then gunicorn (as in the Procfile) and the Celery workers start, every post is built and
signed, and ``--senders`` asyncio connections post the ``checkout.session.completed`` events (a
share of them duplicates, shuffled in) in a closed loop over keep-alive connections; the senders
are one event loop writing prepared bytes, so they take little of the CPU they measure.

First the floor: the same posts, senders and gunicorn settings against ``bench/floor_app.py``, a
bare Flask app that does only what the webhook must (verify, one INSERT, one publish), with
nothing else running. It shows what this stack allows on this machine; the app's ingest rate is
printed as a ratio of it. Both move with whatever else the machine is doing: compare several runs.

Printed: ingest latency p50/p99/max (the app's and the floor's), the time until every event is
processed (no inbox row left RECEIVED), the processing rate, the final counts, and the CPU spent:
by gunicorn per post, by the Celery workers and by the whole machine per unique event. On a small
machine the CPU figures are the steady ones; latency and rate move with whatever else it is doing.
Goals: p99 ingest under 50 ms, at least 200 events/s processed, exactly one request per event.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from floor_app import TABLE as FLOOR_TABLE  # noqa: E402
from paywall import bench_engines, percentile, process_cpu_seconds  # noqa: E402 (the benchmarks share these)
from sqlalchemy import create_engine, text  # noqa: E402

from app.config import Settings  # noqa: E402
from app.integrations.payments import sign_payload  # noqa: E402

BIN = Path(sys.executable).parent
WEBHOOK = "/api/webhooks/stripe"
PRICE = 2500


def seed(env: dict[str, str], unique: int) -> list[dict]:
    """Migrate; one live seller; per unique event an open Checkout row and the built-in gateway's
    state of its paid session. Returns the unique events."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", env["DATABASE_URL"].replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")

    import redis as redis_lib

    from app.db import utcnow
    from app.integrations.builtin_payments import builtin_gateway
    from app.models import Checkout, CheckoutStatus, Profile, User

    settings = Settings.from_env(env, dotenv=False)
    engine = create_engine(settings.database_url or "")
    now = utcnow()
    seller_id = uuid.uuid4()
    checkouts = [uuid.uuid4() for _ in range(unique)]
    with engine.begin() as conn:
        conn.execute(
            User.__table__.insert(),
            [
                {
                    "id": seller_id,
                    "email": "bench@example.com",
                    "password_hash": "x",
                    "role": "SELLER",
                    "email_verified_at": now,
                }
            ],
        )
        conn.execute(
            Profile.__table__.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "user_id": seller_id,
                    "slug": "bench-seller",
                    "display_name": "Bench Seller",
                    "price_cents": PRICE,
                    "currency": "usd",
                }
            ],
        )
        conn.execute(
            Checkout.__table__.insert(),
            [
                {
                    "id": checkout_id,
                    "seller_id": seller_id,
                    "buyer_email": f"buyer{n}@example.org",
                    "note": "bench",
                    "amount_cents": PRICE,
                    "currency": "usd",
                    "submission_key": f"bench-{checkout_id}",
                    "stripe_checkout_session_id": f"cs_test_bench_{n:05d}",
                    "status": CheckoutStatus.OPEN.value,
                    "expires_at": now + timedelta(minutes=31),
                }
                for n, checkout_id in enumerate(checkouts)
            ],
        )
    engine.dispose()

    gateway = builtin_gateway(settings, redis_lib.Redis.from_url(env["REDIS_URL"], decode_responses=True))
    events = []
    for n, checkout_id in enumerate(checkouts):
        metadata = {
            "app": "chatlink",
            "env": settings.app_env,
            "seller_id": str(seller_id),
            "checkout_id": str(checkout_id),
        }
        session = {
            "id": f"cs_test_bench_{n:05d}",
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": "unpaid",
            "amount_total": PRICE,
            "currency": "usd",
            "customer_email": f"buyer{n}@example.org",
            "customer_details": {"email": f"buyer{n}@example.org"},
            "metadata": metadata,
            "payment_intent": f"pi_test_bench_{n:05d}",
            "livemode": False,
        }
        intent = {
            "id": session["payment_intent"],
            "object": "payment_intent",
            "status": "requires_capture",
            "capture_method": "manual",
            "amount": PRICE,
            "amount_capturable": PRICE,
            "amount_received": 0,
            "currency": "usd",
            "metadata": metadata,
        }
        gateway.seed_session(session, intent)
        events.append(
            {
                "id": f"evt_bench_{n:05d}",
                "object": "event",
                "type": "checkout.session.completed",
                "livemode": False,
                "created": int(time.time()),
                "data": {"object": session},
            }
        )
    return events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(
    env: dict[str, str], port: int, web_workers: int, threads: int = 8, target: str = "wsgi:app"
) -> subprocess.Popen[bytes]:
    """gunicorn as in the Procfile (gthread), answering /api/health; ``target`` the WSGI app."""
    command = [str(BIN / "gunicorn"), target, "--bind", f"127.0.0.1:{port}", "--workers", str(web_workers)]
    command += ["--worker-class", "gthread", "--threads", str(threads), "--log-level", "warning"]
    web = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if web.poll() is not None:
            raise RuntimeError("gunicorn exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return web
        except OSError:
            pass
        time.sleep(0.2)
    web.terminate()
    raise RuntimeError("gunicorn did not answer within 90 s")


def start_workers(env: dict[str, str], args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """``--workers`` Celery worker processes on the run's queue, returned once each answers a ping.
    ``--worker-nice`` lowers their CPU priority below gunicorn's, as if they ran on machines of
    their own (the Procfile's web and worker are separate processes, usually on separate hosts)."""
    workers = []
    nice = args.worker_nice
    for n in range(args.workers):
        command = [str(BIN / "celery"), "-A", "celery_worker", "worker", "--loglevel", "WARNING"]
        command += ["--pool", args.worker_pool, "--concurrency", str(args.worker_concurrency)]
        command += ["--hostname", f"bench{n}@%h"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        workers.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
        )
    from celery import Celery

    from app.extensions import celery_broker_url

    probe = Celery(broker=celery_broker_url(env["REDIS_URL"]))
    deadline = time.monotonic() + 90
    while len(probe.control.ping(timeout=1.0) or []) < args.workers:
        if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers):
            raise RuntimeError("the Celery workers did not start")
    return workers


def build_requests(port: int, bodies: list[dict], secret: str) -> list[bytes]:
    """Each post as the bytes Stripe would send (pretty-printed JSON, signed now), built before the
    clock starts so that the senders measure the app, not their own JSON and HMAC work."""
    built = []
    for body in bodies:
        payload = json.dumps(body, indent=2).encode()
        head = (
            f"POST {WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: {sign_payload(payload, secret)}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        built.append(head.encode() + payload)
    return built


async def _send_all(port: int, posts: list[bytes], senders: int) -> tuple[list[float], int]:
    """``senders`` keep-alive connections, each posting the next request as soon as its last one
    was answered (a closed loop, as Stripe's concurrent deliveries to one endpoint)."""
    latencies: list[float] = []
    errors = 0
    pending = iter(posts)

    async def sender() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for post in pending:
            started = time.perf_counter()
            try:
                writer.write(post)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                ok = head.startswith(b"HTTP/1.1 200 ")
            except (OSError, asyncio.IncompleteReadError):
                # A dropped connection is an error for this post; go on with a new one.
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok
        writer.close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return latencies, errors


@dataclass(frozen=True)
class Ingest:
    latencies: list[float]
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        """Posts answered per second."""
        return len(self.latencies) / self.seconds

    def line(self) -> str:
        p50, p99 = percentile(self.latencies, 0.50), percentile(self.latencies, 0.99)
        return (
            f"{len(self.latencies)} posts in {self.seconds:.2f} s ({self.rate:.0f}/s), errors {self.errors}; "
            f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(self.latencies) * 1000:.1f} ms"
        )


def send_all(port: int, posts: list[bytes], senders: int) -> tuple[list[float], int, float]:
    """Post every request; returns (latencies, errors, seconds)."""
    started = time.perf_counter()
    latencies, errors = asyncio.run(_send_all(port, posts, senders))
    return latencies, errors, time.perf_counter() - started


def wait_processed(database_url: str, unique: int, timeout: float) -> tuple[bool, dict[str, int]]:
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                rows = dict(conn.execute(text("SELECT status, count(*) FROM stripe_events GROUP BY status")).all())
            if sum(rows.values()) >= unique and not rows.get("received"):
                return True, rows
            if time.monotonic() > deadline:
                return False, rows
            time.sleep(0.05)
    finally:
        engine.dispose()


def final_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    queries = {
        "inbox events": "SELECT count(*) FROM stripe_events",
        "processed": "SELECT count(*) FROM stripe_events WHERE status = 'processed'",
        "transactions": "SELECT count(*) FROM transactions",
        "call requests": "SELECT count(*) FROM call_requests",
        "pending requests": "SELECT count(*) FROM call_requests WHERE status = 'PENDING'",
        "distinct sessions with a request": "SELECT count(DISTINCT t.stripe_checkout_session_id) FROM call_requests r"
        " JOIN transactions t ON t.id = r.transaction_id",
        "outbox emails": "SELECT count(*) FROM email_outbox",
        "processing span ms": "SELECT coalesce(round(extract(epoch FROM max(processed_at) - min(processed_at)) * 1000),"
        " 0)::int FROM stripe_events",
    }
    try:
        with engine.connect() as conn:
            return {name: conn.execute(text(sql)).scalar_one() for name, sql in queries.items()}
    finally:
        engine.dispose()


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (all processes: the app,
    PostgreSQL, Redis and the senders), from /proc/stat; 0 where it is unavailable."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class CpuMeter:
    """CPU seconds used since each process was added (user + system, the process and its children)
    and by the whole machine (the app, PostgreSQL, Redis and the senders) since the meter began."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.machine_start = machine_busy_seconds()

    def add(self, processes: list[subprocess.Popen[bytes]]) -> None:
        self.start.update((p.pid, process_cpu_seconds(p.pid)) for p in processes)

    def used(self, processes: list[subprocess.Popen[bytes]]) -> float:
        return sum(process_cpu_seconds(p.pid) - self.start[p.pid] for p in processes)

    def machine(self) -> float:
        return machine_busy_seconds() - self.machine_start


def report(
    args: argparse.Namespace,
    unique: int,
    ingest: Ingest,
    floor: Ingest | None,
    done: bool,
    statuses: dict[str, int],
    processed_seconds: float,
    counts: dict[str, int],
    cpu: dict[str, float],
) -> None:
    rate = unique / processed_seconds
    posts = len(ingest.latencies)
    print(f"ingest: {ingest.line()}")
    if floor is not None:
        print(f"floor (bench/floor_app.py, nothing else running): {floor.line()}")
        print(f"app ingest rate / floor rate: {ingest.rate / floor.rate:.2f}")
    since = "the workers started" if args.staged else "the first post"
    state = "all processed" if done else f"NOT all processed after {args.timeout:.0f} s ({statuses})"
    print(f"{state} {processed_seconds:.2f} s after {since}: {rate:.0f} events/s")
    span = counts.pop("processing span ms") / 1000
    print(f"first to last event processed: {span:.2f} s ({unique / span if span else 0:.0f} events/s)")
    print(
        f"CPU: web {cpu['web'] / posts * 1000:.2f} ms per post; per unique event, Celery workers "
        f"{cpu['workers'] / unique * 1000:.2f} ms, whole machine {cpu['machine'] / unique * 1000:.2f} ms"
        " (with PostgreSQL, Redis and the senders)"
    )
    for name, value in counts.items():
        print(f"  {name}: {value}")
    goals = {
        "p99 ingest < 50 ms": percentile(ingest.latencies, 0.99) < 50,
        ">= 200 events/s processed": done and rate >= 200,
        "exactly one request per unique event": counts["call requests"]
        == unique
        == counts["distinct sessions with a request"],
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")


def measure_floor(env: dict[str, str], args: argparse.Namespace, bodies: list[dict]) -> Ingest:
    """The same posts, senders and gunicorn settings against ``bench/floor_app.py`` with nothing
    else running: the floor of the stack on this machine. Its table and queue are its own."""
    from app.extensions import celery_broker_url

    engine = create_engine(env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {FLOOR_TABLE} (LIKE stripe_events INCLUDING ALL)"))
    floor_env = {
        **env,
        "FLOOR_BROKER": celery_broker_url(env["REDIS_URL"]),
        "FLOOR_QUEUE": f"{env['CELERY_QUEUE']}-floor",  # no worker reads it; run() deletes it
        "FLOOR_POOL_SIZE": str(args.web_threads),
    }
    port = free_port()
    web = start_web(floor_env, port, args.web_workers, args.web_threads, target="bench.floor_app:create_app()")
    try:
        return Ingest(*send_all(port, build_requests(port, bodies, env["STRIPE_WEBHOOK_SECRET"]), args.senders))
    finally:
        web.terminate()
        web.wait(timeout=20)
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {FLOOR_TABLE}"))
        engine.dispose()


def run(args: argparse.Namespace) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="chatlink-bench-"))
    engines = bench_engines(scratch)
    processes: list[subprocess.Popen[bytes]] = []
    redis_url = ""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        database_url, redis_url = engines.start()
        port = free_port()
        env = {
            **os.environ,
            "APP_ENV": "development",
            "APP_URL": f"http://127.0.0.1:{port}",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_QUEUE": queue,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "INSTANCE_PATH": str(scratch / "instance"),
            "LOG_LEVEL": "WARNING",
            "STRIPE_SECRET_KEY": "",
            "STRIPE_WEBHOOK_SECRET": f"whsec_bench_{secrets.token_hex(16)}",
            "POSTMARK_SERVER_TOKEN": "",
        }
        unique = round(args.events * (1 - args.duplicates))
        events = seed(env, unique)
        bodies = events + [random.choice(events) for _ in range(args.events - unique)]
        random.shuffle(bodies)
        floor = None if args.no_floor else measure_floor(env, args, bodies)
        web = start_web(env, port, args.web_workers, args.web_threads)
        processes.append(web)
        workers = [] if args.staged else start_workers(env, args)
        processes += workers
        print(
            f"{args.events} events ({unique} unique, {args.events - unique} duplicates), "
            f"{args.senders} senders, {args.web_workers} gunicorn workers x {args.web_threads} threads, "
            f"{args.workers} Celery workers x concurrency {args.worker_concurrency}"
            f"{f' at nice {args.worker_nice}' if args.worker_nice else ''}"
            f"{', started after the ingest' if args.staged else ''}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        posts = build_requests(port, bodies, env["STRIPE_WEBHOOK_SECRET"])
        meter = CpuMeter()
        meter.add(processes)
        started = time.perf_counter()
        ingest = Ingest(*send_all(port, posts, args.senders))
        if args.staged:
            workers = start_workers(env, args)
            processes += workers
            meter.add(workers)
            started = time.perf_counter()
        done, statuses = wait_processed(database_url, unique, args.timeout)
        processed_seconds = time.perf_counter() - started
        cpu = {"web": meter.used([web]), "workers": meter.used(workers), "machine": meter.machine()}
        counts = final_counts(database_url)
        report(args, unique, ingest, floor, done, statuses, processed_seconds, counts, cpu)
        exact = counts["call requests"] == unique == counts["distinct sessions with a request"]
        return 0 if ingest.errors == 0 and exact and done else 1
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if redis_url:
            import redis as redis_lib

            client = redis_lib.Redis.from_url(redis_url)
            for pattern in (f"chatlink:{queue}:*", f"{queue}*", f"_kombu.binding.{queue}*"):
                for key in client.scan_iter(pattern):
                    client.delete(key)
        engines.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of posts that repeat an event")
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=1)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8, help="gunicorn threads per worker (the Procfile's 8)")
    parser.add_argument(
        "--worker-nice", type=int, default=0, help="run the Celery workers at this nice level (gunicorn stays at 0)"
    )
    parser.add_argument("--worker-pool", default="prefork", help="Celery pool: prefork (the default), threads or solo")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor run of bench/floor_app.py before the app's"
    )
    parser.add_argument(
        "--staged", action="store_true", help="start the workers only after the ingest, to measure each apart"
    )
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())

"""Webhook ingest and processing under load: gunicorn plus Celery workers, on loopback.

    .venv/bin/python bench/webhooks.py [--events 2000] [--duplicates 0.2] [--senders 32]
                                       [--workers 2] [--worker-concurrency 1] [--web-workers 2]

Engines: with DATABASE_URL set, a scratch database is created on that server (and dropped at the
end); otherwise a private embedded PostgreSQL is started in a temporary directory. Redis is
REDIS_URL or an embedded one; the run uses its own Celery queue and key namespace.

The scratch database is migrated and seeded with one live seller and one open Checkout per
unique event; the built-in gateway's state (a completed session with a PaymentIntent on hold)
is seeded in Redis for each, because the handler re-fetches the session exactly as it would from
Stripe. Then gunicorn (as in the Procfile) and the Celery workers start, and ``--senders``
threads post the signed ``checkout.session.completed`` events (a share of them duplicates,
shuffled in) over keep-alive connections. Printed: ingest latency p50/p99/max, the time until
every event is processed (no inbox row left RECEIVED), the processing rate, and the final counts.
Goals: p99 ingest under 50 ms, at least 200 events/s processed, exactly one request per event.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from paywall import bench_engines  # noqa: E402 (the benchmarks share their scratch engines)
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
    from app.integrations.payments import builtin_gateway
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
            "amount": PRICE,
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


def start_web(env: dict[str, str], port: int, web_workers: int) -> subprocess.Popen[bytes]:
    """gunicorn as in the Procfile (gthread), answering /api/health."""
    command = [str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", str(web_workers)]
    command += ["--worker-class", "gthread", "--threads", "8", "--log-level", "warning"]
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


def start_workers(env: dict[str, str], count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    """``count`` Celery worker processes on the run's queue, returned once each answers a ping."""
    workers = []
    for n in range(count):
        command = [str(BIN / "celery"), "-A", "celery_worker", "worker", "--loglevel", "WARNING"]
        command += ["--concurrency", str(concurrency), "--hostname", f"bench{n}@%h"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        workers.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
    from celery import Celery

    from app.extensions import celery_broker_url

    probe = Celery(broker=celery_broker_url(env["REDIS_URL"]))
    deadline = time.monotonic() + 90
    while len(probe.control.ping(timeout=1.0) or []) < count:
        if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers):
            raise RuntimeError("the Celery workers did not start")
    return workers


def send_all(port: int, bodies: list[dict], secret: str, senders: int) -> tuple[list[float], int, float]:
    """Post every body from ``senders`` threads; returns (latencies, errors, seconds)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    next_index = [0]

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= len(bodies):
                break
            payload = json.dumps(bodies[index], indent=2).encode()
            headers = {"Content-Type": "application/json", "Stripe-Signature": sign_payload(payload, secret)}
            started = time.perf_counter()
            try:
                conn.request("POST", WEBHOOK, body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def report(
    args: argparse.Namespace,
    unique: int,
    latencies: list[float],
    errors: int,
    send_seconds: float,
    done: bool,
    statuses: dict[str, int],
    processed_seconds: float,
    counts: dict[str, int],
) -> None:
    rate = unique / processed_seconds
    posts = len(latencies)
    print(f"ingest: {posts} posts in {send_seconds:.2f} s ({posts / send_seconds:.0f}/s), errors {errors}")
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"ingest latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    since = "the workers started" if args.staged else "the first post"
    state = "all processed" if done else f"NOT all processed after {args.timeout:.0f} s ({statuses})"
    print(f"{state} {processed_seconds:.2f} s after {since}: {rate:.0f} events/s")
    span = counts.pop("processing span ms") / 1000
    print(f"first to last event processed: {span:.2f} s ({unique / span if span else 0:.0f} events/s)")
    for name, value in counts.items():
        print(f"  {name}: {value}")
    goals = {
        "p99 ingest < 50 ms": p99 < 50,
        ">= 200 events/s processed": done and rate >= 200,
        "exactly one request per unique event": counts["call requests"]
        == unique
        == counts["distinct sessions with a request"],
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")


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
        processes.append(start_web(env, port, args.web_workers))
        if not args.staged:
            processes += start_workers(env, args.workers, args.worker_concurrency)
        print(
            f"{args.events} events ({unique} unique, {args.events - unique} duplicates), "
            f"{args.senders} senders, {args.web_workers} gunicorn workers x 8 threads, "
            f"{args.workers} Celery workers x concurrency {args.worker_concurrency}"
            f"{', started after the ingest' if args.staged else ''}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        started = time.perf_counter()
        latencies, errors, send_seconds = send_all(port, bodies, env["STRIPE_WEBHOOK_SECRET"], args.senders)
        if args.staged:
            processes += start_workers(env, args.workers, args.worker_concurrency)
            started = time.perf_counter()
        done, statuses = wait_processed(database_url, unique, args.timeout)
        processed_seconds = time.perf_counter() - started
        counts = final_counts(database_url)
        report(args, unique, latencies, errors, send_seconds, done, statuses, processed_seconds, counts)
        exact = counts["call requests"] == unique == counts["distinct sessions with a request"]
        return 0 if errors == 0 and exact and done else 1
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
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--staged", action="store_true", help="start the workers only after the ingest, to measure each apart"
    )
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())

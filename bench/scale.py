"""Cost as data grows: a year of a busy platform against a near-empty database, in one run.

    .venv/bin/python bench/scale.py [--factor 1.0] [--rounds 4] [--requests 60] [--no-admin-export]
                                    [--keep | --reuse NAME]

Two databases on one PostgreSQL (DATABASE_URL's server, else an embedded one in a temporary
directory), both migrated, then seeded with COPY by ``tests/scale_seed.py``: the *busy year*
(100,000 sellers, 1,000,000 call requests with their checkouts and transactions, 3,000,000 ledger
rows, 1,000,000 outbox rows, 1,000,000 inbox events and audit rows; ``--factor`` scales it) and the
*near-empty* twin (three sellers, twenty calls). In both, one seller is the focus: 10,000 of the
calls are theirs in the busy year (ten in the twin). Redis is REDIS_URL or an embedded one.

Then, in rounds that alternate the two databases (so both see the same machine), the app is built
on each and the same work is timed in-process through the Flask test client: the focus seller's
paywall, dashboard and balance, the admin queues, the seller's CSV export (streamed: time to the
first row, rows per second and the process's RSS through the stream), one beat sweep, and one
webhook fulfilment (``process_stripe_event`` on a fresh paid checkout). Each figure is printed
beside its near-empty twin with the ratio. Goals: every p95 within 1.5x of its twin, a sweep under
20 ms, memory flat during the export. With ``--admin-export`` left on, the admin's export of the
whole ledger runs once on the busy year, the strongest check that memory stays flat.

Seeding takes about five minutes on two cores (most of it building the indexes after the COPY).
``--keep`` leaves both databases on DATABASE_URL's server and prints their name; ``--reuse NAME``
measures them again without seeding (each measured round adds a few dozen fulfilled checkouts).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from alembic import command  # noqa: E402
from paywall import percentile  # noqa: E402 (the benchmarks share it)
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.config import Settings  # noqa: E402
from app.engines import ScratchEngines, create_database, drop_database  # noqa: E402
from tests.conftest import alembic_config  # noqa: E402
from tests.e2e.drills.flow import completed_event  # noqa: E402
from tests.scale_seed import PRICE_CENTS, Scale, Seeded, seed  # noqa: E402

RATIO_GOAL = 1.5
SWEEP_GOAL_MS = 20.0
PAGES = {
    "paywall": "/u/{slug}",
    "dashboard": "/dashboard",
    "balance (API)": "/api/balance",
}
ADMIN_PAGES = {
    "admin index": "/admin",
    "admin reports queue": "/admin/reports",
    "admin payouts queue": "/admin/payouts",
    "admin disputes": "/admin/disputes",
}


@dataclass
class Database:
    name: str
    url: str
    seeded: Seeded
    timings: dict[str, list[float]] = field(default_factory=dict)
    export: dict[str, float] = field(default_factory=dict)

    def add(self, what: str, seconds: float) -> None:
        self.timings.setdefault(what, []).append(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, default=1.0, help="size of the busy year (1.0 = the full year)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per page per round")
    parser.add_argument("--no-admin-export", action="store_true", help="skip the whole-ledger export")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases (needs DATABASE_URL)")
    parser.add_argument("--reuse", metavar="NAME", help="measure the databases a --keep run left")
    args = parser.parse_args()
    if (args.keep or args.reuse) and not os.environ.get("DATABASE_URL"):
        parser.error("--keep and --reuse need DATABASE_URL (an embedded server goes away with the run)")

    with tempfile.TemporaryDirectory(prefix="chatlink-scale-") as scratch:
        engines = ScratchEngines(
            Path(scratch),
            args.reuse or f"chatlink_scale_{uuid.uuid4().hex[:8]}",
            database_url=os.environ.get("DATABASE_URL"),
            redis_url=os.environ.get("REDIS_URL"),
        )
        big_url, redis_url = engines.start()
        small_name = f"{engines.name}_empty"
        small_url = make_url(big_url).set(database=small_name).render_as_string(hide_password=False)
        try:
            if args.reuse:
                databases = reuse(big_url, small_url)
            else:
                create_database(engines.admin_url, small_name)
                databases = prepare(big_url, small_url, args.factor)
            settings = {db.name: settings_for(db.url, redis_url) for db in databases}
            for round_number in range(args.rounds):
                for database in databases:
                    print(f"round {round_number + 1}: {database.name}", flush=True)
                    measure(database, settings[database.name], args.requests)
            if not args.no_admin_export:
                print("the admin's export of the whole busy-year ledger", flush=True)
                admin_export(databases[0], settings[databases[0].name])
            report(*databases)
        finally:
            if args.keep or args.reuse:
                print(f"kept: --reuse {engines.name}")
                engines.admin_url = ""  # ScratchEngines.stop() then drops nothing
            else:
                drop_database(engines.admin_url, small_name)
            engines.stop()


def settings_for(database_url: str, redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "APP_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_QUEUE": f"bench-scale-{uuid.uuid4().hex[:6]}",  # published tasks wait unread
            "SECRET_KEY": "bench-scale-secret-key-0123456789abcdef",
            "LOG_LEVEL": "WARNING",
            "INSTANCE_PATH": tempfile.mkdtemp(prefix="chatlink-scale-instance-"),
        },
        dotenv=False,
    )


def prepare(big_url: str, small_url: str, factor: float) -> list[Database]:
    full = Scale.busy_year()
    busy = Scale(
        sellers=max(10, int(full.sellers * factor)),
        calls=max(100, int(full.calls * factor)),
        ledger_rows=max(300, int(full.ledger_rows * factor)),
        outbox_rows=max(100, int(full.outbox_rows * factor)),
        focus_calls=full.focus_calls if factor >= 0.05 else max(10, int(full.focus_calls * factor * 20)),
    )
    databases = []
    for name, url, scale in (("busy year", big_url, busy), ("near-empty", small_url, Scale.near_empty())):
        config = alembic_config(url)
        config.attributes["configure_logger"] = False
        command.upgrade(config, "head")
        print(f"seeding the {name}: {scale}", flush=True)
        seeded = seed(url, scale, progress=lambda line: print(f"  {line}", flush=True))
        print(f"  seeded in {seeded.seconds:.0f} s", flush=True)
        databases.append(Database(name, url, seeded))
    return databases


def reuse(big_url: str, small_url: str) -> list[Database]:
    """The databases of an earlier --keep run, as they are."""
    from sqlalchemy import create_engine, func

    from app.models import CallRequest, Profile, Role, User

    databases = []
    for name, url in (("busy year", big_url), ("near-empty", small_url)):
        engine = create_engine(url)
        with engine.connect() as conn:
            focus = conn.scalar(select(Profile.user_id).where(Profile.slug == "focus-seller"))
            admin = conn.scalar(select(User.id).where(User.role == Role.ADMIN))
            calls = conn.scalar(select(func.count()).select_from(CallRequest))
        engine.dispose()
        if focus is None or admin is None:
            raise SystemExit(f"{url} holds no seeded data: run with --keep first")
        seeded = Seeded(focus_id=focus, focus_slug="focus-seller", admin_id=admin, counts={"call_requests": calls})
        databases.append(Database(name, url, seeded))
    return databases


# --- Measuring --------------------------------------------------------------------------------


def build_app(settings: Settings) -> Any:
    from app import create_app

    return create_app(settings)


def logged_in(app: Any, user_id: uuid.UUID) -> Any:
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"], session["_fresh"] = f"{user_id}:1", True
    return client


def timed(what: Callable[[], Any]) -> float:
    started = time.perf_counter()
    what()
    return time.perf_counter() - started


def measure(database: Database, settings: Settings, requests: int) -> None:
    from app.db import db

    app = build_app(settings)
    seeded = database.seeded
    seller, admin = logged_in(app, seeded.focus_id), logged_in(app, seeded.admin_id)
    for label, path in PAGES.items():
        url = path.format(slug=seeded.focus_slug)
        get(seller, url)  # warm: the first request compiles templates and queries
        for _ in range(requests):
            database.add(label, timed(lambda url=url: get(seller, url)))
    for label, path in ADMIN_PAGES.items():
        get(admin, path)
        for _ in range(max(20, requests // 3)):
            database.add(label, timed(lambda path=path: get(admin, path)))
    for _ in range(3):
        seller_export(database, seller)
    measure_sweep(database, app, max(20, requests // 2))
    measure_fulfilment(database, app, settings, max(20, requests // 4))
    release(db)


def release(db: Any) -> None:
    """Close the run's connections before the next app (or the drop) replaces its database: a
    finished streamed response may still hold one until it is collected."""
    gc.collect()
    db.engine.dispose()


def get(client: Any, path: str) -> None:
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}")


def seller_export(database: Database, client: Any) -> None:
    """The focus seller's ledger CSV, read as a browser would (streamed)."""
    started = time.perf_counter()
    response = client.get("/ledger.csv", buffered=False)
    rows, first = 0, None
    for _chunk in response.response:
        rows += 1
        first = first or time.perf_counter() - started
    response.close()
    database.add("seller export: first row", first or 0.0)
    database.add("seller export: whole", time.perf_counter() - started)
    database.export["seller rows"] = rows - 1


def admin_export(database: Database, settings: Settings) -> None:
    """The admin's CSV of every ledger row, with the process's RSS sampled through the stream."""
    from app.db import db

    app = build_app(settings)
    client = logged_in(app, database.seeded.admin_id)
    process = psutil.Process()
    started = time.perf_counter()
    response = client.get("/admin/ledger.csv", buffered=False)
    samples, rows = [], 0
    for _chunk in response.response:
        rows += 1
        if rows % 50_000 == 0:
            samples.append(process.memory_info().rss)
    response.close()
    elapsed = time.perf_counter() - started
    release(db)
    database.export.update(
        {
            "admin rows": rows - 1,
            "admin seconds": elapsed,
            "rss first MB": samples[0] / 2**20 if samples else 0.0,
            "rss last MB": samples[-1] / 2**20 if samples else 0.0,
            "rss max MB": max(samples) / 2**20 if samples else 0.0,
        }
    )


def measure_sweep(database: Database, app: Any, runs: int) -> None:
    from tasks.maintenance import sweep

    with app.app_context():
        sweep()  # warm
        for _ in range(runs):
            database.add("beat sweep", timed(sweep))


def measure_fulfilment(database: Database, app: Any, settings: Settings, runs: int) -> None:
    """``checkout.session.completed`` processed for fresh paid checkouts of another seller (so the
    focus seller's pages stay as seeded): the task's whole unit of work, gateway re-fetch included."""
    from tasks.stripe_events import process_stripe_event

    with app.app_context():
        rows = paid_checkouts(app, settings, runs + 1)
        process_stripe_event(str(rows[0]))  # warm
        for row in rows[1:]:
            database.add("webhook fulfilment", timed(lambda row=row: process_stripe_event(str(row))))


def paid_checkouts(app: Any, settings: Settings, count: int) -> list[uuid.UUID]:
    """Open checkouts, paid on the built-in gateway, their events in the inbox: the inbox rows' ids."""
    from app.db import db, utcnow
    from app.extensions import redis_client
    from app.integrations.builtin_payments import builtin_gateway
    from app.models import Checkout, CheckoutStatus, Profile
    from app.services.stripe_events import record_event

    gateway = builtin_gateway(settings, redis_client(app))
    tag = uuid.uuid4().hex[:10]
    rows = []
    with db.session_scope() as session:
        seller_id = session.scalar(select(Profile.user_id).where(Profile.slug != "focus-seller").limit(1))
        for n in range(count):
            checkout = Checkout(
                seller_id=seller_id,
                buyer_email=f"fulfil{n}@buyers.example.org",
                amount_cents=PRICE_CENTS,
                currency="usd",
                submission_key=f"fulfil-{tag}-{n}",
                stripe_checkout_session_id=f"cs_test_fulfil_{tag}_{n}",
                status=CheckoutStatus.OPEN,
                expires_at=utcnow() + timedelta(minutes=31),
            )
            session.add(checkout)
            session.flush()
            metadata = {
                "app": "chatlink",
                "env": settings.app_env,
                "seller_id": str(seller_id),
                "checkout_id": str(checkout.id),
            }
            paid = {
                "id": checkout.stripe_checkout_session_id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "unpaid",
                "amount_total": PRICE_CENTS,
                "currency": "usd",
                "customer_email": checkout.buyer_email,
                "customer_details": {"email": checkout.buyer_email},
                "metadata": metadata,
                "payment_intent": f"pi_test_fulfil_{tag}_{n}",
                "livemode": False,
            }
            intent = {
                "id": paid["payment_intent"],
                "object": "payment_intent",
                "status": "requires_capture",
                "amount": PRICE_CENTS,
                "currency": "usd",
                "metadata": metadata,
            }
            gateway.seed_session(paid, intent)
            rows.append(record_event(session, completed_event(paid)))
    return rows


# --- Report -----------------------------------------------------------------------------------


def report(busy: Database, empty: Database) -> None:
    print()
    print(f"seeded: {busy.name} in {busy.seeded.seconds:.0f} s ({fmt_counts(busy.seeded.counts)})")
    print(f"        {empty.name} in {empty.seeded.seconds:.1f} s ({fmt_counts(empty.seeded.counts)})")
    print()
    header = f"{'':28} {'busy p50':>9} {'busy p95':>9} {'empty p50':>10} {'empty p95':>10} {'p95 ratio':>10}  goal"
    print(header)
    print("-" * len(header))
    misses = []
    for what, samples in busy.timings.items():
        twin = empty.timings.get(what, [])
        p95, twin95 = percentile(samples, 0.95), percentile(twin, 0.95)
        ratio = p95 / twin95 if twin95 else float("nan")
        goal, ok = goal_of(what, p95, ratio)
        if not ok:
            misses.append(what)
        print(
            f"{what:28} {percentile(samples, 0.5):9.2f} {p95:9.2f} {percentile(twin, 0.5):10.2f} {twin95:10.2f}"
            f" {ratio:10.2f}  {goal}{'' if ok else '  MISSED'}"
        )
    print("(milliseconds; the export's 'whole' grows with the seller's own rows and has no ratio goal)")
    print()
    rows = busy.export.get("seller rows", 0)
    whole = percentile(busy.timings.get("seller export: whole", []), 0.5) / 1000
    print(f"seller export: {rows:,} rows in {whole * 1000:.0f} ms ({rows / whole if whole else 0:,.0f} rows/s)")
    if "admin rows" in busy.export:
        e = busy.export
        growth = e["rss last MB"] - e["rss first MB"]
        print(
            f"admin export: {e['admin rows']:,.0f} rows in {e['admin seconds']:.1f} s"
            f" ({e['admin rows'] / e['admin seconds']:,.0f} rows/s); RSS through the stream:"
            f" {e['rss first MB']:.0f} MB after 50,000 rows, {e['rss last MB']:.0f} MB at the end"
            f" (max {e['rss max MB']:.0f} MB; growth {growth:+.1f} MB)"
        )
        if abs(growth) > 20:
            misses.append("admin export memory")
    print()
    print("every goal met" if not misses else f"missed: {', '.join(misses)}")


def goal_of(what: str, p95: float, ratio: float) -> tuple[str, bool]:
    if what == "seller export: whole":
        return "-", True
    if what == "beat sweep":
        return f"<= {RATIO_GOAL}x and < {SWEEP_GOAL_MS:.0f} ms", ratio <= RATIO_GOAL and p95 < SWEEP_GOAL_MS
    return f"<= {RATIO_GOAL}x", ratio <= RATIO_GOAL


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {count:,}" for table, count in counts.items())


if __name__ == "__main__":
    main()

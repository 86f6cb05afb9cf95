"""The timed work of ``bench/scale.py`` on one database, in a process of its own: the pages, the
seller's export, a sweep and a webhook fulfilment through the Flask test client and the tasks."""

from __future__ import annotations

import gc
import multiprocessing
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psutil
from sqlalchemy import select

from app.config import Settings
from tests.e2e.drills.flow import completed_event
from tests.scale_seed import PRICE_CENTS, Seeded

STEP = 5  # requests per turn: the two databases take turns this often, so both see the same machine

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


class Probe:
    """One database's app in a process of its own (the app's database handle is process-wide),
    timing what the parent asks for: the parent alternates the two databases every few requests,
    so a busy moment of a shared machine lands on both alike."""

    def __init__(self, settings: Settings, seeded: Seeded) -> None:
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, settings, seeded), daemon=True)
        self.process.start()

    def ask(self, what: str, count: int) -> list[tuple[str, float]]:
        self.conn.send((what, count))
        answer = self.conn.recv()
        if isinstance(answer, str):
            raise RuntimeError(f"{what}: {answer}")
        return list(answer)

    def close(self) -> None:
        self.conn.send(("quit", 0))
        self.process.join(timeout=60)


def serve(conn: Any, settings: Settings, seeded: Seeded) -> None:
    work = Work(build_app(settings), settings, seeded)
    while True:
        what, count = conn.recv()
        if what == "quit":
            break
        try:
            conn.send(work.run(what, count))
        except Exception as error:  # reported to the parent, which stops the run
            conn.send(repr(error))
    release()


class Work:
    """The timed work on one database; each kind is warmed once, untimed, before it counts."""

    def __init__(self, app: Any, settings: Settings, seeded: Seeded) -> None:
        self.app, self.settings, self.seeded = app, settings, seeded
        self.seller, self.admin = logged_in(app, seeded.focus_id), logged_in(app, seeded.admin_id)
        self.warm: set[str] = set()
        self.rows = 0

    def run(self, what: str, count: int) -> list[tuple[str, float]]:
        if what == "seller rows":
            return [(what, float(self.rows))]
        if what not in self.warm:
            self.warm.add(what)
            self.once(what)
        return [timing for _ in range(count) for timing in self.once(what)]

    def once(self, what: str) -> list[tuple[str, float]]:
        if what in PAGES:
            url = PAGES[what].format(slug=self.seeded.focus_slug)
            return [(what, timed(lambda: get(self.seller, url)))]
        if what in ADMIN_PAGES:
            return [(what, timed(lambda: get(self.admin, ADMIN_PAGES[what])))]
        if what == "seller export":
            first, whole, self.rows = seller_export(self.seller)
            return [("seller export: first row", first), ("seller export: whole", whole)]
        if what == "beat sweep":
            from tasks.maintenance import sweep

            with self.app.app_context():
                return [(what, timed(sweep))]
        if what == "webhook fulfilment":
            return [(what, self.fulfil())]
        raise ValueError(what)

    def fulfil(self) -> float:
        """``checkout.session.completed`` processed for a fresh paid checkout of another seller
        (the focus seller's pages stay as seeded): the task's whole unit of work, the gateway's
        re-fetch of the session included; preparing the checkout is not timed."""
        from tasks.stripe_events import process_stripe_event

        with self.app.app_context():
            (row,) = paid_checkouts(self.app, self.settings, 1)
            return timed(lambda: process_stripe_event(str(row)))


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


def release() -> None:
    """Close the app's connections before its database is dropped: a finished streamed response
    may still hold one until it is collected."""
    from app.db import db

    gc.collect()
    db.engine.dispose()


def get(client: Any, path: str) -> None:
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}")


def seller_export(client: Any) -> tuple[float, float, int]:
    """The focus seller's ledger CSV, read as a browser would (streamed): seconds to the first
    ledger row (the line after the header, which is written before the query runs), seconds to
    the last, and the rows."""
    started = time.perf_counter()
    response = client.get("/ledger.csv", buffered=False)
    lines, first = 0, 0.0
    for _chunk in response.response:
        lines += 1
        if lines == 2:
            first = time.perf_counter() - started
    response.close()
    return first, time.perf_counter() - started, lines - 1


def admin_export(settings: Settings, admin_id: uuid.UUID) -> dict[str, float]:
    """The admin's CSV of every ledger row, with the process's RSS sampled through the stream."""
    app = build_app(settings)
    client = logged_in(app, admin_id)
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
    release()
    return {
        "admin rows": rows - 1,
        "admin seconds": elapsed,
        "rss first MB": samples[0] / 2**20 if samples else 0.0,
        "rss last MB": samples[-1] / 2**20 if samples else 0.0,
        "rss max MB": max(samples) / 2**20 if samples else 0.0,
    }


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
                "capture_method": "manual",
                "amount": PRICE_CENTS,
                "amount_capturable": PRICE_CENTS,
                "amount_received": 0,
                "currency": "usd",
                "metadata": metadata,
            }
            gateway.seed_session(paid, intent)
            rows.append(record_event(session, completed_event(paid)))
    return rows

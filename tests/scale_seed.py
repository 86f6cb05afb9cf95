"""A year of a busy ChatLink, written with COPY: ``bench/scale.py`` seeds it at full size and
``tests/unit/test_query_plans.py`` at a small one.

Every row is one the product could have written: sellers with profiles, paid checkouts, their
transactions and call requests (mostly completed, some declined, expired or no-shows, a few
pending or accepted right now), the ledger (an earning per paid call, payouts and the reversals
of rejected ones), the email outbox, the Stripe inbox, the audit log, ratings and reports. One
seller, the *focus* seller, has ``focus_calls`` of the calls; the benchmarks look at their pages.
What waits right now (the live calls, each admin queue full) is the same at every size, and the
near-empty twin holds the focus seller's whole year too, so a page shows as many rows on the twin
as on the busy year and only the rest of the platform's history differs.
Nothing is due when the seed ends (no pending request past its expiry, no call past its end, no
email or event waiting), so a sweep measured afterwards is a steady-state one.

Secondary indexes and constraints are dropped for the load and rebuilt after it (sorted builds
instead of millions of random insertions into UUID indexes), then the tables are analysed and
vacuumed, as a production database would be by autovacuum.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from app.services.accounts import hash_password
from tests.scale_rows import (
    AUDIT_COLUMNS,
    CALL_COLUMNS,
    CHECKOUT_COLUMNS,
    EVENT_COLUMNS,
    LEDGER_COLUMNS,
    OUTBOX_COLUMNS,
    OUTCOMES,
    PAYOUT_COLUMNS,
    PROFILE_COLUMNS,
    RATING_COLUMNS,
    REPORT_COLUMNS,
    TEMPLATES,
    TRANSACTION_COLUMNS,
    USER_COLUMNS,
    CallPlan,
    Clock,
    N,
    PayoutPlan,
    copy_rows,
    drop_indexes,
    uuid4_from,
)

PASSWORD = "scale-password-5b1e"
PRICE_CENTS = 2500
FEE_CENTS = 500
DAY = 86400
# Tables this module fills; their indexes are rebuilt after the load.
TABLES = (
    "users",
    "profiles",
    "checkouts",
    "transactions",
    "call_requests",
    "payout_requests",
    "ledger_entries",
    "email_outbox",
    "stripe_events",
    "event_log",
    "ratings",
    "reports",
)


@dataclass(frozen=True)
class Scale:
    sellers: int
    calls: int
    ledger_rows: int
    outbox_rows: int
    focus_calls: int
    stripe_events: int | None = None  # default: one per call
    audit_events: int | None = None  # default: one per call
    # What is waiting right now, the same at every size, so that a page shows as many rows on a
    # near-empty database as on a busy one: live calls (pending or accepted, ``focus_live`` of
    # them the focus seller's) and ``queue`` items in each admin queue (open reports, requested
    # payouts, disputes), as many as the queues show.
    live: int = 40
    focus_live: int = 10
    queue: int = 200

    @classmethod
    def busy_year(cls) -> Scale:
        return cls(sellers=100_000, calls=1_000_000, ledger_rows=3_000_000, outbox_rows=1_000_000, focus_calls=10_000)

    @classmethod
    def near_empty(cls) -> Scale:
        """The focus seller's own year and today's work (live calls, full admin queues), without
        the platform's history around them: every page and export of the focus seller carries the
        same rows as on the busy year, so only the rest of the data differs."""
        return cls(sellers=3, calls=10_400, ledger_rows=31_200, outbox_rows=400, focus_calls=10_000)


@dataclass
class Seeded:
    """What the benchmarks need to find in the seeded database."""

    focus_id: uuid.UUID
    focus_slug: str
    admin_id: uuid.UUID
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def seed(
    database_url: str,
    scale: Scale,
    *,
    rng_seed: int = 20,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Seeded:
    """Fill an empty, migrated database at ``database_url`` (a psycopg or SQLAlchemy URL)."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    writer = _Writer(random.Random(rng_seed), scale, now)
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        rebuild = drop_indexes(conn, TABLES)
        for table, columns, rows in writer.tables():
            began = time.perf_counter()
            count = copy_rows(conn, table, columns, rows)
            writer.seeded.counts[table] = count
            progress(f"{table}: {count:,} rows in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        for statement in rebuild:
            conn.execute(statement)
        progress(f"indexes and constraints rebuilt in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        progress(f"vacuum and analyze in {time.perf_counter() - began:.1f} s")
    writer.seeded.seconds = time.perf_counter() - started
    return writer.seeded


class _Writer:
    def __init__(self, rng: random.Random, scale: Scale, now: datetime) -> None:
        self.rng, self.scale, self.clock = rng, scale, Clock(now)
        self.sellers = [uuid4_from(rng) for _ in range(max(scale.sellers, 1))]
        self.focus = self.sellers[0]
        self.admin = uuid4_from(rng)
        self.seeded = Seeded(focus_id=self.focus, focus_slug="focus-seller", admin_id=self.admin)
        # Filled while the calls are written; the ledger needs them.
        self.earning_calls: list[tuple[uuid.UUID, uuid.UUID, float]] = []
        self.open_cases: set[int] = set()
        self.cumulative: list[tuple[float, tuple[Any, ...]]] = []
        total = 0.0
        for share, *outcome in OUTCOMES:
            total += share
            self.cumulative.append((total, tuple(outcome)))

    def tables(self) -> Iterator[tuple[str, tuple[str, ...], Iterator[str]]]:
        yield "users", USER_COLUMNS, self.users()
        yield "profiles", PROFILE_COLUMNS, self.profiles()
        # Oldest first, as a production table fills: recent rows sit together at the heap's end.
        calls = sorted(self.call_plan(), key=lambda c: -c.age)
        # The admin's queues: the latest completed calls are disputed and reported, still open.
        latest = [c.n for c in reversed(calls) if c.status == "COMPLETED"][: self.scale.queue]
        self.open_cases = set(latest)
        yield "checkouts", CHECKOUT_COLUMNS, (self.checkout(c) for c in calls)
        yield "transactions", TRANSACTION_COLUMNS, (self.transaction(c) for c in calls)
        yield "call_requests", CALL_COLUMNS, (self.call(c) for c in calls)
        self.earning_calls = [(c.id, c.seller, c.age) for c in calls if c.earns]
        yield "ratings", RATING_COLUMNS, self.ratings(calls)
        yield "reports", REPORT_COLUMNS, self.reports(calls)
        del calls
        payouts = sorted(self.payout_plan(), key=lambda p: -p.age)
        # The latest ones still wait for an admin.
        waiting = [n for n in range(len(payouts) - 1, -1, -1) if payouts[n].status == "PROCESSED"]
        for n in waiting[: self.scale.queue]:
            payouts[n] = dataclasses.replace(payouts[n], status="REQUESTED")
        yield "payout_requests", PAYOUT_COLUMNS, (self.payout(p) for p in payouts)
        yield "ledger_entries", LEDGER_COLUMNS, self.ledger(payouts)
        yield "email_outbox", OUTBOX_COLUMNS, self.outbox()
        yield "stripe_events", EVENT_COLUMNS, self.stripe_events()
        yield "event_log", AUDIT_COLUMNS, self.audit_events()

    # --- People --------------------------------------------------------------------------

    def users(self) -> Iterator[str]:
        password_hash = hash_password(PASSWORD, rounds=4)
        for n, seller in enumerate(self.sellers):
            email = "focus@sellers.example.com" if seller == self.focus else f"seller{n}@sellers.example.com"
            joined = self.clock.ago(self.rng.uniform(30 * DAY, 400 * DAY))
            yield f"{seller}\t{email}\t{password_hash}\tSELLER\t{joined}\t{joined}\t{joined}\n"
        yield f"{self.admin}\tadmin@example.com\t{password_hash}\tADMIN\t{self.clock.ago(0)}\t{joined}\t{joined}\n"

    def profiles(self) -> Iterator[str]:
        for n, seller in enumerate(self.sellers):
            slug = self.seeded.focus_slug if seller == self.focus else f"seller-{n}"
            joined = self.clock.ago(self.rng.uniform(30 * DAY, 400 * DAY))
            bio = "Ask me about product design, careers and portfolios."
            row = f"{seller}\t{slug}\tSeller {n}\t{bio}\t{PRICE_CENTS}\tusd\t{joined}\t{joined}"
            yield f"{uuid4_from(self.rng)}\t{row}\n"

    # --- Calls and their money -----------------------------------------------------------

    def call_plan(self) -> Iterator[CallPlan]:
        """The live calls (pending or accepted in the last hours) first, then the finished ones
        of the past year; the focus seller has ``focus_calls`` of them, ``focus_live`` live."""
        scale, others = self.scale, self.sellers[1:] or self.sellers
        focus_history_end = scale.live + scale.focus_calls - scale.focus_live
        for n in range(scale.calls):
            if n < scale.live:
                seller = self.focus if n < scale.focus_live else self.rng.choice(others)
                state = "PENDING" if n % 2 == 0 else "ACCEPTED"
                yield CallPlan(
                    n, seller, uuid4_from(self.rng), uuid4_from(self.rng), self.rng.uniform(60, 3 * 3600), state
                )
            else:
                seller = self.focus if n < focus_history_end else self.rng.choice(others)
                age = self.rng.uniform(2 * 3600, 365 * DAY)
                yield CallPlan(n, seller, uuid4_from(self.rng), uuid4_from(self.rng), age, self._outcome())

    def _outcome(self) -> tuple[Any, ...]:
        draw = self.rng.random()
        for threshold, outcome in self.cumulative:
            if draw < threshold:
                return outcome
        return self.cumulative[-1][1]

    def checkout(self, c: CallPlan) -> str:
        created = self.clock.ago(c.age + 120)
        return (
            f"{uuid4_from(self.rng)}\t{c.seller}\tbuyer{c.n}@buyers.example.org\t\t{PRICE_CENTS}\tusd\tsub-{c.n}"
            f"\tcs_test_{c.n:08d}\tcomplete\t{self.clock.ago(c.age - 1800)}\t{created}\n"
        )

    def transaction(self, c: CallPlan) -> str:
        state = {"PENDING": "held", "ACCEPTED": "captured"}.get(c.status, c.payment)
        if c.status == "COMPLETED" and (c.n in self.open_cases or c.n % 1000 == 7):
            state = "disputed"
        captured = self.clock.ago(c.age - 600) if state in ("captured", "refunded", "disputed") else N
        voided = self.clock.ago(c.age - 3600) if state == "voided" else N
        refunded = self.clock.ago(c.age - 4000) if state == "refunded" else N
        disputed = self.clock.ago(c.age - 5 * DAY) if state == "disputed" else N
        refunded_cents = PRICE_CENTS if state == "refunded" else 0
        created = self.clock.ago(c.age)
        return (
            f"{c.transaction}\t{c.seller}\tbuyer{c.n}@buyers.example.org\tcs_test_{c.n:08d}\tpi_test_{c.n:08d}"
            f"\t{PRICE_CENTS}\t{FEE_CENTS}\t{PRICE_CENTS - FEE_CENTS}\tusd\t{state}\t{refunded_cents}"
            f"\t{captured}\t{voided}\t{refunded}\t{disputed}\t{created}\t{created}\n"
        )

    def call(self, c: CallPlan) -> str:
        at = self.clock.ago
        created, expires = at(c.age), at(c.age - DAY)
        accepted = declined = cancelled = deadline = join_key = provider = room = room_url = N
        ready = deleted = buyer_joined = seller_joined = started = ends = ended = ended_by = N
        present = "f"
        if c.status in ("ACCEPTED", "COMPLETED") or c.reason in ("buyer_no_show", "seller_no_show"):
            accepted, deadline, join_key = at(c.age - 600), at(c.age - 1500), f"k{c.n:030d}"
            provider, room, room_url = "builtin", f"room-{c.n:09d}", f"https://rooms.example/room-{c.n:09d}"
            ready = at(c.age - 620)
            # Rooms are deleted when the call ends; a handful were given up on after an hour.
            deleted = N if c.status == "ACCEPTED" or c.n % 2000 == 11 else at(c.age - 2400)
        if c.status == "ACCEPTED":
            # Accepted within the last hours: the join window is still open (nothing is overdue).
            accepted, ready, deadline = at(c.age / 2), at(c.age / 2), at(-900)
        elif c.status == "COMPLETED":
            buyer_joined, seller_joined = at(c.age - 900), at(c.age - 905)
            started, ends, ended, ended_by = at(c.age - 900), at(c.age - 1200), at(c.age - 1200), "timer"
        elif c.status == "DECLINED":
            declined = at(c.age - 700)
        elif c.status == "CANCELLED":
            cancelled = at(c.age - 1600)
            if c.reason == "buyer_no_show":
                seller_joined = at(c.age - 800)
        if c.status == "PENDING":
            expires = at(-DAY + c.age)
        updated = at(c.age - 2400) if c.age > 3600 else at(c.age / 2)
        return (
            "\t".join(
                (
                    *(str(c.id), str(c.seller), str(c.transaction), f"buyer{c.n}@buyers.example.org", "Hello!"),
                    *(c.status, c.reason or N, created, updated, expires, accepted, declined, cancelled, deadline),
                    *(
                        join_key,
                        provider,
                        room,
                        room_url,
                        ready,
                        deleted,
                        buyer_joined,
                        seller_joined,
                        present,
                        present,
                    ),
                    *(started, ends, ended, ended_by),
                )
            )
            + "\n"
        )

    def ratings(self, calls: list[CallPlan]) -> Iterator[str]:
        for c in calls:
            if c.status == "COMPLETED" and c.n % 10 < 3:
                stars = 5 if c.n % 7 else 4
                yield f"{uuid4_from(self.rng)}\t{c.id}\t{c.seller}\t{stars}\t{self.clock.ago(c.age - 3600)}\n"

    def reports(self, calls: list[CallPlan]) -> Iterator[str]:
        for c in calls:
            if c.status == "COMPLETED" and (c.n in self.open_cases or c.n % 200 == 3):
                resolved = c.n not in self.open_cases
                status, note = ("resolved", "Talked to both; no action.") if resolved else ("open", N)
                resolved_at = self.clock.ago(c.age - 2 * DAY) if resolved else N
                resolved_by = str(self.admin) if resolved else N
                yield (
                    f"{uuid4_from(self.rng)}\t{c.seller}\t{c.id}\tbuyer{c.n}@buyers.example.org\tbuyer\tno_show"
                    f"\tThe seller left early.\t{status}\t{note}\t{resolved_by}\t{resolved_at}"
                    f"\t{self.clock.ago(c.age - 3 * DAY)}\n"
                )

    # --- Ledger ----------------------------------------------------------------------------

    def payout_plan(self) -> Iterator[PayoutPlan]:
        """Payouts fill the ledger up to ``ledger_rows`` (a rejected one adds its reversal); the
        focus seller asks for one every twenty calls or so."""
        remaining = max(0, self.scale.ledger_rows - len(self.earning_calls))
        payouts = round(remaining / 1.21)
        focus_payouts = self.scale.focus_calls // 20
        others = self.sellers[1:] or self.sellers
        for n in range(payouts):
            seller = self.focus if n % max(1, payouts // max(1, focus_payouts)) == 0 else self.rng.choice(others)
            # Exactly remaining - payouts of them rejected, spread evenly; a few still waiting.
            rejected = (n * (remaining - payouts)) // payouts != ((n + 1) * (remaining - payouts)) // payouts
            status = "REJECTED" if rejected else "PROCESSED"
            yield PayoutPlan(uuid4_from(self.rng), seller, self.rng.uniform(3600, 365 * DAY), status)

    def payout(self, p: PayoutPlan) -> str:
        processed = self.clock.ago(p.age - DAY) if p.status != "REQUESTED" else N
        reference = "wire ok" if p.status == "PROCESSED" else N
        reason = "Details did not match." if p.status == "REJECTED" else N
        processed_by = str(self.admin) if p.status != "REQUESTED" else N
        return (
            f"{p.id}\t{p.seller}\t2000\tusd\t{p.status}\t{reference}\t{reason}\t{processed_by}"
            f"\t{processed}\t{self.clock.ago(p.age)}\n"
        )

    def ledger(self, payouts: list[PayoutPlan]) -> Iterator[str]:
        """Earnings, payouts and reversals merged in time order, as they were appended."""
        net = PRICE_CENTS - FEE_CENTS
        earnings = (
            (age - 1300, f"{seller}\tearning\t{net}\tusd\t{call_id}\t{N}\tCall completed")
            for call_id, seller, age in self.earning_calls
        )
        requested = ((p.age, f"{p.seller}\tpayout\t-2000\tusd\t{N}\t{p.id}\tPayout requested") for p in payouts)
        returned = (
            (p.age - DAY, f"{p.seller}\treversal\t2000\tusd\t{N}\t{p.id}\tPayout rejected")
            for p in payouts
            if p.status == "REJECTED"
        )
        for age, row in heapq.merge(earnings, requested, returned, key=lambda entry: -entry[0]):
            yield f"{uuid4_from(self.rng)}\t{row}\t{self.clock.ago(age)}\n"

    def ages(self, count: int) -> list[float]:
        """``count`` moments of the past year, oldest first."""
        return sorted((self.rng.uniform(600, 365 * DAY) for _ in range(count)), reverse=True)

    # --- Inbox, outbox, audit --------------------------------------------------------------

    def outbox(self) -> Iterator[str]:
        for n, age in enumerate(self.ages(self.scale.outbox_rows)):
            template = TEMPLATES[n % len(TEMPLATES)]
            created, sent = self.clock.ago(age), self.clock.ago(age - 2)
            yield (
                f"{uuid4_from(self.rng)}\tbuyer{n}@buyers.example.org\t{template}\t{{}}\t{template}:{n}\tsent\t1\t{N}"
                f"\t{N}\tpm-{n:010d}\tYour call request\tHello, your request is in.\t<p>Hello, your request is in.</p>"
                f"\t{sent}\t{created}\n"
            )

    def stripe_events(self) -> Iterator[str]:
        count = self.scale.calls if self.scale.stripe_events is None else self.scale.stripe_events
        for n, age in enumerate(self.ages(count)):
            payload = '{"type": "checkout.session.completed"}'
            received, processed = self.clock.ago(age), self.clock.ago(age - 1)
            yield (
                f"{uuid4_from(self.rng)}\tevt_{n:012d}\tcheckout.session.completed\tf\t{payload}\tprocessed\t1\t{N}"
                f"\t{received}\t{processed}\n"
            )

    def audit_events(self) -> Iterator[str]:
        count = self.scale.calls if self.scale.audit_events is None else self.scale.audit_events
        types = ("request.created", "request.accepted", "call.completed", "request.declined")
        for n, age in enumerate(self.ages(count)):
            kind = types[n % len(types)]
            at = self.clock.ago(age)
            yield f"{uuid4_from(self.rng)}\t{kind}\t{uuid4_from(self.rng)}\tsystem\t{{}}\t{at}\n"

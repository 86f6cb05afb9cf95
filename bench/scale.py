"""Cost as data grows: a year of a busy platform against a near-empty database, in one run.

    .venv/bin/python bench/scale.py [--factor 1.0] [--rounds 4] [--requests 60] [--no-admin-export]
                                    [--keep | --reuse NAME]

Two databases on one PostgreSQL (DATABASE_URL's server, else an embedded one in a temporary
directory), both migrated, then seeded with COPY by ``tests/scale_seed.py``: the *busy year*
(100,000 sellers, 1,000,000 call requests with their checkouts and transactions, 3,000,000 ledger
rows, 1,000,000 outbox rows, 1,000,000 inbox events and audit rows; ``--factor`` scales it) and the
*near-empty* twin (three sellers, 10,400 calls). One seller is the focus: 10,000 of the calls
are theirs in both, ten of them live. Both hold the same work waiting today (40 live calls, 200
items in each admin queue), so each page and the focus seller's export carry as many rows in both
and only the platform's history around them differs: the ratio is the cost of that growth.
Redis is REDIS_URL or an embedded one.

Then each database gets its own process with the app built on it (the app's database handle is
process-wide), and the two take turns every few requests, round after round, so a busy moment of
a shared machine lands on both alike. Each times the same work in-process through the Flask test
client (``bench/scale_probe.py``): the focus seller's paywall, dashboard and balance, the admin
queues, the seller's CSV export (streamed: time to the first ledger row and to the last), one beat sweep,
and one webhook fulfilment (``process_stripe_event`` on a fresh paid checkout). Each figure is
printed beside its near-empty twin with the ratio. Goals: every p95 within 1.5x of its twin, a
sweep under 20 ms, memory flat during the export. With ``--admin-export`` left on, the admin's
export of the whole ledger (3,000,000 rows) runs once on the busy year with the process's RSS
sampled through the stream: the check that memory stays flat.

Seeding takes about five minutes on two cores (most of it building the indexes after the COPY).
``--keep`` leaves both databases on DATABASE_URL's server and prints their name; ``--reuse NAME``
measures them again without seeding (each run adds its fulfilled checkouts to both).
``bench/scale.py --factor 0.05 --rounds 1`` is a two-minute check that the whole run works.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from paywall import percentile  # noqa: E402 (the benchmarks share it)
from scale_probe import ADMIN_PAGES, PAGES, STEP, Probe, admin_export  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.config import Settings  # noqa: E402
from app.engines import ScratchEngines, create_database, drop_database  # noqa: E402
from tests.conftest import alembic_config  # noqa: E402
from tests.scale_seed import Scale, Seeded, seed  # noqa: E402

RATIO_GOAL = 1.5
SWEEP_GOAL_MS = 20.0


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
            measure_rounds(databases, settings, args.rounds, args.requests)
            if not args.no_admin_export:
                print("the admin's export of the whole busy-year ledger", flush=True)
                databases[0].export.update(admin_export(settings[databases[0].name], databases[0].seeded.admin_id))
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


def plan(requests: int) -> list[tuple[str, int]]:
    """What each round times, and how many times."""
    pages = [(label, requests) for label in PAGES]
    admin = [(label, max(STEP, requests // 3)) for label in ADMIN_PAGES]
    # Enough exports that their p95 is not simply the slowest one (20 samples' would be).
    rest = [("seller export", requests // 4), ("beat sweep", requests // 2), ("webhook fulfilment", requests // 4)]
    return [*pages, *admin, *rest]


def measure_rounds(databases: list[Database], settings: dict[str, Settings], rounds: int, requests: int) -> None:
    probes = [Probe(settings[database.name], database.seeded) for database in databases]
    try:
        for round_number in range(rounds):
            print(f"round {round_number + 1} of {rounds}", flush=True)
            for what, count in plan(requests):
                for _ in range(max(1, count // STEP)):
                    for database, probe in zip(databases, probes, strict=True):
                        for label, seconds in probe.ask(what, STEP):
                            database.add(label, seconds)
        databases[0].export["seller rows"] = int(probes[0].ask("seller rows", 1)[0][1])
    finally:
        for probe in probes:
            probe.close()


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
    print("(milliseconds)")
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
    if what == "beat sweep":
        return f"<= {RATIO_GOAL}x and < {SWEEP_GOAL_MS:.0f} ms", ratio <= RATIO_GOAL and p95 < SWEEP_GOAL_MS
    return f"<= {RATIO_GOAL}x", ratio <= RATIO_GOAL


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {count:,}" for table, count in counts.items())


if __name__ == "__main__":
    main()

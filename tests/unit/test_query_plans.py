"""The sweep's and the dashboard's queries use indexes, never a sequential scan of a big table.

A database of its own is seeded with COPY (``tests/scale_seed.py``, about a twentieth of
``bench/scale.py``'s year) and analysed, so PostgreSQL plans from real statistics: at this size a
sequential scan of a table of tens of thousands of rows costs far more than an index scan for a
selective query, and the planner only picks it when no index serves the query. Every statement a
sweep and a dashboard visit send is captured as sent (text and parameters) and EXPLAINed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event

from app import create_app
from app.config import PROJECT_ROOT, Settings
from app.db import db, utcnow
from app.engines import ScratchEngines
from tests.conftest import alembic_config
from tests.scale_seed import TABLES, Scale, Seeded, seed

SCALE = Scale(sellers=5_000, calls=50_000, ledger_rows=150_000, outbox_rows=50_000, focus_calls=2_000)
# The tables that grow with the business (every seeded one but the reports, a few hundred rows
# here); a sequential scan of any of them is a cost that grows too.
BIG_TABLES = set(TABLES) - {"reports"}


@dataclass
class Statement:
    sql: str
    parameters: Any


@pytest.fixture(scope="module")
def big_database(engine_urls: tuple[str, str]) -> Iterator[tuple[str, Seeded]]:
    from alembic import command

    name = f"chatlink_plans_{uuid.uuid4().hex[:8]}"
    engines = ScratchEngines(PROJECT_ROOT / "instance", name, database_url=engine_urls[0], redis_url=engine_urls[1])
    url, _ = engines.start()
    try:
        command.upgrade(alembic_config(url), "head")
        yield url, seed(url, SCALE)
    finally:
        engines.stop()


@pytest.fixture(scope="module")
def big_app(app, settings: Settings, big_database: tuple[str, Seeded]):  # type: ignore[no-untyped-def]
    """The app on the seeded database, for this module's tests; the run's own app and database
    (``db`` is process-wide) are put back afterwards."""
    saved = (db.engine, db._sessionmaker)
    big = create_app(settings.replace(database_url=big_database[0]))
    try:
        yield big
    finally:
        engine = db.engine
        db.engine, db._sessionmaker = saved
        app.extensions["celery"].set_default()
        engine.dispose()


def capture(app) -> list[Statement]:  # type: ignore[no-untyped-def]
    statements: list[Statement] = []

    def record(conn, cursor, sql, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(Statement(sql, parameters))

    event.listen(app.extensions["db"].engine, "before_cursor_execute", record)
    return statements


def sequential_scans(app, statements: list[Statement]) -> list[str]:  # type: ignore[no-untyped-def]
    """``table: statement`` for every sequential scan of a big table in the statements' plans."""
    found = []
    for statement in statements:
        if not statement.sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
            continue
        for table in _seq_scanned(plan_of(app, statement)):
            if table in BIG_TABLES:
                found.append(f"{table}: {' '.join(statement.sql.split())}")
    return found


def plan_of(app, statement: Statement) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    raw = app.extensions["db"].engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement.sql, statement.parameters)
        (plan,) = cursor.fetchone()
        raw.rollback()
    finally:
        raw.close()
    return dict(plan[0]["Plan"])


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _seq_scanned(plan: dict[str, Any]) -> Iterator[str]:
    return (node["Relation Name"] for node in _nodes(plan) if node.get("Node Type") == "Seq Scan")


def test_a_sweep_scans_no_big_table(big_app) -> None:  # type: ignore[no-untyped-def]
    from tasks.maintenance import SWEEP_QUESTION, SWEEP_STEPS

    statements = capture(big_app)
    settings = big_app.extensions["settings"]
    with big_app.app_context():
        with db.session_scope() as session:
            SWEEP_QUESTION.ask(session, utcnow())  # the question every sweep starts with
        for step in SWEEP_STEPS:
            with db.session_scope() as session:
                step(session, utcnow(), settings)
    assert len(statements) >= len(SWEEP_STEPS)
    scans = sequential_scans(big_app, statements)
    assert scans == [], "\n".join(scans)


def test_the_dashboard_and_balance_scan_no_big_table(big_app, big_database) -> None:  # type: ignore[no-untyped-def]
    _, seeded = big_database
    client = big_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"], session["_fresh"] = f"{seeded.focus_id}:1", True
    statements = capture(big_app)
    for path in ("/dashboard", "/api/balance", "/requests", f"/u/{seeded.focus_slug}"):
        assert client.get(path).status_code == 200, path
    scans = sequential_scans(big_app, statements)
    assert scans == [], "\n".join(scans)


@pytest.mark.parametrize(
    ("page", "marker"),
    [("/u/{slug}", "percentile_cont"), ("/dashboard", "ratings.comment"), ("/dashboard", "ORDER BY coalesce(")],
    ids=["the paywall's latest answers", "the dashboard's newest ratings", "the dashboard's recent calls"],
)
def test_a_busy_sellers_newest_rows_are_walked_in_index_order(big_app, big_database, page, marker) -> None:  # type: ignore[no-untyped-def]
    """The paywall's response-time hint reads the seller's latest answers; the dashboard their
    newest ratings and latest finished calls. For a seller with thousands of calls on a platform
    where most have a few, the planner must not fetch and sort all of theirs (it did, on
    bench/scale.py's year: 4 ms of a 5 ms paywall, 7 ms for five ratings, 18 ms for five calls)
    but walk an index newest first and stop."""
    _, seeded = big_database
    client = big_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"], session["_fresh"] = f"{seeded.focus_id}:1", True
    statements = capture(big_app)
    assert client.get(page.format(slug=seeded.focus_slug)).status_code == 200
    (statement,) = [s for s in statements if marker in s.sql]
    nodes = list(_nodes(plan_of(big_app, statement)))
    assert [n["Node Type"] for n in nodes if n["Node Type"] in ("Sort", "Bitmap Heap Scan")] == []
    walked = {"Index Scan", "Index Only Scan"}
    assert any(n["Node Type"] in walked and n.get("Scan Direction") == "Backward" for n in nodes)


def test_the_seed_is_what_the_plans_are_judged_on(big_database) -> None:
    """Guards the test above against a seed that silently shrank (a seq scan is cheap on nothing)."""
    _, seeded = big_database
    assert seeded.counts["call_requests"] == SCALE.calls
    assert seeded.counts["ledger_entries"] == SCALE.ledger_rows
    assert seeded.counts["email_outbox"] == SCALE.outbox_rows

"""The lifecycle module is the one owner of a request's moves: its table is the source of the
documented diagram, nothing else in app/ writes a status or a payment state, and its sweep lease
is a column of its own that no ordinary write moves."""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

from freezegun import freeze_time
from sqlalchemy import update

from app.config import PROJECT_ROOT
from app.db import utcnow
from app.models import CallRequest, RequestStatus
from app.services.lifecycle.table import PAYMENT_MOVES, REQUEST_MOVES, state_diagram
from app.services.request_payments import payment_followups
from tests.factories import CallRequestFactory

LIFECYCLE = PROJECT_ROOT / "app" / "services" / "lifecycle"
STATE_ENUMS = {"RequestStatus", "PaymentState"}
STATE_FIELDS = {"status", "payment_state"}


def test_the_documented_diagram_is_the_one_drawn_from_the_tables() -> None:
    page = (PROJECT_ROOT / "docs" / "lifecycle.md").read_text()
    drawn = re.search(r"<!-- lifecycle diagram: start -->\n(.*)\n<!-- lifecycle diagram: end -->", page, re.S)
    assert drawn is not None, "docs/lifecycle.md lost its diagram markers"
    assert drawn.group(1) == state_diagram(), "paste this between the markers:\n" + state_diagram()


def test_every_move_leaves_a_state_for_another_and_names_itself_once() -> None:
    for table in (REQUEST_MOVES, PAYMENT_MOVES):
        for name, move in table.items():
            assert move.name == name and move.sources and ":" not in move.label
    assert REQUEST_MOVES["accept"].sources == (RequestStatus.PENDING,)
    assert REQUEST_MOVES["complete"].target == RequestStatus.COMPLETED


def state_writes(path: Path) -> list[str]:
    """Where ``path`` sets a request status or a payment state: a keyword or dict key ``status``
    given a RequestStatus, any ``payment_state=``, or an assignment to such an attribute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        pairs: list[tuple[str | None, ast.AST]] = []
        if isinstance(node, ast.Call):
            pairs += [(keyword.arg, keyword.value) for keyword in node.keywords]
        elif isinstance(node, ast.Dict):
            pairs += [
                (key.value, value)
                for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant)
            ]
        elif isinstance(node, ast.Assign):
            pairs += [(target.attr, node.value) for target in node.targets if isinstance(target, ast.Attribute)]
        for field, value in pairs:
            names = {sub.id for sub in ast.walk(value) if isinstance(sub, ast.Name)}
            if field == "payment_state" or (field == "status" and names & STATE_ENUMS):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', '?')}")
    return found


def test_no_module_outside_the_lifecycle_writes_a_status_or_a_payment_state() -> None:
    writers = [
        where
        for path in sorted((PROJECT_ROOT / "app").rglob("*.py"))
        if LIFECYCLE not in path.parents
        for where in state_writes(path)
    ]
    assert writers == []


def test_the_scan_sees_a_write_when_there_is_one() -> None:
    # The executor itself writes both (status=spec.target is found through payment_state's twin).
    assert [where.split(":")[0] for where in state_writes(LIFECYCLE / "_moves.py")] == [
        "app/services/lifecycle/_moves.py"
    ]
    assert state_writes(LIFECYCLE / "decisions.py"), "the request created as PENDING or CANCELLED"


def test_an_ordinary_write_does_not_delay_the_sweeps_follow_up(db_session, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
    with freeze_time("2026-11-25 12:00:00"):
        accepted = CallRequestFactory(
            status=RequestStatus.ACCEPTED,
            accepted_at=utcnow(),
            join_deadline=utcnow() + timedelta(minutes=15),
            join_key="k" * 43,
        )
    with freeze_time("2026-11-25 12:01:50"):
        # Something unrelated touches the row (presence, a room column): updated_at moves.
        db_session.execute(update(CallRequest).where(CallRequest.id == accepted.id).values(updated_at=utcnow()))
    with freeze_time("2026-11-25 12:02:01"):
        assert payment_followups(db_session, utcnow(), settings)["captures_requeued"] == 1
        assert payment_followups(db_session, utcnow(), settings)["captures_requeued"] == 0  # leased
    db_session.refresh(accepted)
    assert accepted.sweep_lease_until is not None

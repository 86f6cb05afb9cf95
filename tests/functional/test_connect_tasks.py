"""The Connect tasks run as a worker runs them: declared with ``chatlink_task``, registered under
their module's name, and each one does its job when called with what it is published with."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_connect import builtin_connect
from app.models import AutomaticPayout, PayoutStatus, PayoutTransfer, TransferState
from app.services import connect, payouts
from tasks import automatic_payouts as automatic_payout_tasks
from tasks import transfers as transfer_tasks
from tests.connect_support import connected_seller

NAMES = {
    "tasks.transfers.send_transfer",
    "tasks.automatic_payouts.run_automatic_payouts",
    "tasks.builtin_connect.deliver_builtin_connect_event",
}


def test_the_tasks_are_registered_with_the_shared_policy(app):
    registry = app.extensions["celery"].tasks
    assert set(registry) >= NAMES
    assert registry["tasks.transfers.send_transfer"].max_retries == 8
    assert registry["tasks.transfers.send_transfer"].ignore_result is True
    assert "tasks.automatic_payouts.run_automatic_payouts" in {
        entry["task"] for entry in app.extensions["celery"].conf.beat_schedule.values()
    }


def test_send_transfer_pays_a_payout_and_is_a_no_op_for_anything_else(app, db_session, settings, redis):
    twin = builtin_connect(settings, redis, notify=lambda event: None)
    seller, _ = connected_seller(db_session, twin, balance=3000)
    payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
    db_session.commit()

    with app.app_context():
        assert transfer_tasks.send_transfer(str(payout.id)) == "sent"
        assert transfer_tasks.send_transfer(str(payout.id)) is None
        assert transfer_tasks.send_transfer(str(uuid.uuid4())) is None

    db_session.expire_all()
    row = db_session.scalars(select(PayoutTransfer).where(PayoutTransfer.payout_request_id == payout.id)).one()
    assert row.state == TransferState.SENT
    assert db_session.get(type(payout), payout.id).status == PayoutStatus.PROCESSED


def test_run_automatic_payouts_pays_the_weekly_sellers_once(app, db_session, settings, redis):
    twin = builtin_connect(settings, redis, notify=lambda event: None)
    seller, _ = connected_seller(db_session, twin, balance=4000)
    connect.set_schedule(db_session, seller.id, "weekly", now=utcnow())
    db_session.commit()

    with app.app_context():
        assert automatic_payout_tasks.run_automatic_payouts() == 1
        assert automatic_payout_tasks.run_automatic_payouts() == 0

    rows = db_session.scalars(select(AutomaticPayout).where(AutomaticPayout.seller_id == seller.id)).all()
    assert len(rows) == 1

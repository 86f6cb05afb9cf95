"""Every registered Celery task runs once, for real, against the real database.

The list comes from the Celery app's registry, so a new task is covered the moment it exists: a
task without a scenario here fails the first test. Each scenario builds the realistic state its
task works on (a paid request through the built-in checkout and the signed webhook, an accepted
call, a started call, ...) and the task runs through ``apply()``, with its real retry policy. Any
exception fails the test: a task that cannot run must fail the suite, not production.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.models import CallRequest, OutboxEmail, StripeEvent
from app.services.checkout import start_checkout
from app.services.lifecycle.decisions import accept_request, decline_request
from tests.factories import ProfileFactory


@dataclass
class World:
    """What the scenarios share: the served app, a session on committed data, and what earlier
    tasks produced."""

    app: Flask
    session: Session
    events: list[dict[str, Any]] = field(default_factory=list)

    def paid_event(self) -> dict[str, Any]:
        """A checkout paid on the built-in gateway: the signed event it would send."""
        settings = self.app.extensions["settings"]
        profile = ProfileFactory()
        self.session.commit()
        gateway = builtin_gateway(settings, self.app.extensions["redis"], notify=self.events.append)
        checkout = start_checkout(
            self.session,
            slug=profile.slug,
            buyer_email=f"buyer-{secrets.token_hex(4)}@example.org",
            note="",
            submission_key=secrets.token_urlsafe(24),
            gateway=gateway,
            app_url=settings.app_url,
            app_env=settings.app_env,
            capture_manually=True,
            now=utcnow(),
        )
        self.session.commit()
        gateway.pay(checkout.stripe_checkout_session_id or "")
        return self.events[-1]

    def inbox_row(self, event: dict[str, Any]) -> str:
        """The event delivered over HTTP to the app's webhook, as the built-in gateway's task does."""
        from tasks.builtin_payments import deliver_builtin_webhook

        assert run(deliver_builtin_webhook, event) == 200
        row_id = self.session.scalar(select(StripeEvent.id).where(StripeEvent.stripe_event_id == event["id"]))
        return str(row_id)

    def paid_request(self) -> uuid.UUID:
        """A PENDING request, made the way production makes it."""
        from tasks.stripe_events import process_stripe_event

        event = self.paid_event()
        assert run(process_stripe_event, self.inbox_row(event)) == "processed"
        request_id = self.session.scalar(
            select(CallRequest.id).where(CallRequest.buyer_email == event["data"]["object"]["customer_email"])
        )
        assert request_id is not None, "the paid checkout became a request"
        return request_id

    def accepted_call(self) -> uuid.UUID:
        from tasks.calls import provision_room
        from tasks.request_payments import capture_accepted

        request_id = self.paid_request()
        seller_id = self.session.scalar(select(CallRequest.seller_id).where(CallRequest.id == request_id))
        assert seller_id is not None
        accept_request(self.session, request_id, seller_id=seller_id, now=utcnow(), join_window_seconds=900)
        self.session.commit()
        assert run(capture_accepted, str(request_id)) == "captured"
        assert run(provision_room, str(request_id)) == "created"
        return request_id

    def started_call(self, *, overdue: bool) -> uuid.UUID:
        call_id = self.accepted_call()
        started = utcnow() - timedelta(seconds=400 if overdue else 10)
        self.session.execute(
            update(CallRequest)
            .where(CallRequest.id == call_id)
            .values(started_at=started, ends_at=started + timedelta(seconds=300))
        )
        self.session.commit()
        return call_id


def run(task: Any, *args: Any) -> Any:
    """Run ``task`` as a worker would (its retry policy included); any exception fails the test."""
    result = task.apply(args=args)
    assert result.successful(), f"{task.name} raised:\n{result.traceback}"
    return result.result


def start_room(world: World) -> tuple[Any, ...]:
    return (str(world.started_call(overdue=False)),), "moved"


def end_call(world: World) -> tuple[Any, ...]:
    return (str(world.started_call(overdue=True)),), "ended"


def release_room(world: World) -> tuple[Any, ...]:
    from tasks.call_endings import end_call as end_call_task

    call_id = world.started_call(overdue=True)
    world.session.execute(update(CallRequest).where(CallRequest.id == call_id).values(ended_at=utcnow()))
    world.session.commit()
    # The timer ends the call and deletes the room itself; a second deletion finds nothing to do.
    run(end_call_task, str(call_id))
    world.session.execute(update(CallRequest).where(CallRequest.id == call_id).values(room_deleted_at=None))
    world.session.commit()
    return (str(call_id),), "deleted"


def _ended_early_by_the_seller(world: World, *, after: int = 100) -> uuid.UUID:
    """An accepted, paid call both were connected to, ended by the seller ``after`` seconds in."""
    from app.services import call_endings, calls, media_presence

    call_id = world.accepted_call()
    start = utcnow() - timedelta(seconds=after + 10)
    world.session.execute(
        update(CallRequest)
        .where(CallRequest.id == call_id)
        .values(started_at=start, ends_at=start + timedelta(seconds=300))
    )
    for party in ("buyer", "seller"):
        for beat in range(0, after + 1, 4):
            media_presence.page_connected(world.session, call_id, party, f"{party}-w", start + timedelta(seconds=beat))
    config = calls.CallConfig.from_settings(world.app.extensions["settings"])
    end = start + timedelta(seconds=after)
    assert call_endings.end_call(world.session, call_id, ended_by="seller", config=config, now=end) == "ended"
    world.session.commit()
    return call_id


def refund_buyer(world: World) -> tuple[Any, ...]:
    """The unused share of a call the seller ended early, refunded in part on the built-in gateway."""
    return (str(_ended_early_by_the_seller(world)),), "refunded"


def refund_problem(world: World) -> tuple[Any, ...]:
    from app.services import problems
    from app.services.lifecycle import require_request
    from tests.factories import AdminFactory

    call = require_request(world.session, _ended_early_by_the_seller(world))
    case = problems.open_case(world.session, call, "buyer", problems.clean_draft("ended_early", ""), now=utcnow())
    admin = AdminFactory()
    world.session.flush()
    problems.refund_case(world.session, case.id, admin_id=admin.id, amount_cents=100, note="", now=utcnow())
    world.session.commit()
    return (str(case.id),), "refunded"


def process_daily_event(world: World) -> tuple[Any, ...]:
    """Daily's participant.joined for the buyer of a call in a Daily room, from the inbox."""
    from app.services import daily_events

    call_id = world.accepted_call()
    world.session.execute(update(CallRequest).where(CallRequest.id == call_id).values(video_provider="daily"))
    room = world.session.scalar(select(CallRequest.room_name).where(CallRequest.id == call_id))
    payload = {"room": room, "session_id": "s-1", "user_id": "buyer", "joined_at": utcnow().timestamp()}
    event = {"version": "1.0.0", "type": "participant.joined", "id": f"evt-{uuid.uuid4()}", "payload": payload}
    row_id = daily_events.record_event(world.session, event)
    world.session.commit()
    return (str(row_id),), "processed"


def poll_daily_presence(world: World) -> tuple[Any, ...]:
    # This deployment has no Daily key: the poll has nothing to ask (it runs only where Daily is
    # configured without webhooks; tests/functional/test_daily_webhooks.py polls a fake Daily).
    return (), {"daily_calls_polled": 0}


def release_hold(world: World) -> tuple[Any, ...]:
    request_id = world.paid_request()
    seller_id = world.session.scalar(select(CallRequest.seller_id).where(CallRequest.id == request_id))
    assert seller_id is not None
    decline_request(world.session, request_id, seller_id=seller_id, now=utcnow())
    world.session.commit()
    return (str(request_id),), "voided"


def capture_accepted(world: World) -> tuple[Any, ...]:
    request_id = world.paid_request()
    seller_id = world.session.scalar(select(CallRequest.seller_id).where(CallRequest.id == request_id))
    assert seller_id is not None
    accept_request(world.session, request_id, seller_id=seller_id, now=utcnow(), join_window_seconds=900)
    world.session.commit()
    return (str(request_id),), "captured"


def provision_room(world: World) -> tuple[Any, ...]:
    request_id, _ = capture_accepted(world)
    from tasks.request_payments import capture_accepted as capture_task

    run(capture_task, *request_id)
    return request_id, "created"


def send_email(world: World) -> tuple[Any, ...]:
    world.paid_request()  # queues "request_created" and "payment_received"
    email_ids = world.session.scalars(select(OutboxEmail.id).order_by(OutboxEmail.created_at)).all()
    return tuple(str(email_id) for email_id in email_ids[-2:]), "sent,sent"


def process_stripe_event(world: World) -> tuple[Any, ...]:
    return (world.inbox_row(world.paid_event()),), "processed"


def deliver_builtin_webhook(world: World) -> tuple[Any, ...]:
    return (world.paid_event(),), 200


def sweep(world: World) -> tuple[Any, ...]:
    world.started_call(overdue=True)
    return (), None


def sweep_full_history(world: World) -> tuple[Any, ...]:
    """A decline whose release was lost three days ago, beyond the sweep's look-back."""
    request_id, _ = release_hold(world)
    three_days_ago = utcnow() - timedelta(days=3)
    world.session.execute(
        update(CallRequest).where(CallRequest.id == uuid.UUID(request_id[0])).values(declined_at=three_days_ago)
    )
    world.session.commit()
    return (), {
        "captures_requeued": 0,
        "releases_requeued": 1,
        "rooms_requeued": 0,
        "room_releases_requeued": 0,
        "refunds_requeued": 0,
    }


def ping(world: World) -> tuple[Any, ...]:
    return (), None


def delete_profile_photos(world: World) -> tuple[Any, ...]:
    from app.models import Profile
    from app.services.photos import set_profile_photo
    from tests.unit.test_photos import make_image

    profile = ProfileFactory()
    world.session.commit()
    storage = world.app.extensions["storage"]
    set_profile_photo(world.session, profile_id=profile.id, data=make_image("PNG"), storage=storage)
    world.session.commit()
    # The account's deletion removes the profile row, then queues this task.
    world.session.execute(delete(Profile).where(Profile.id == profile.id))
    world.session.commit()
    return (str(profile.id),), 2  # the photo and its thumbnail


def _connect_seller(world: World, *, balance: int) -> uuid.UUID:
    """A seller onboarded on the built-in Connect twin, with ``balance`` cents earned."""
    from app.integrations.builtin_connect import builtin_connect
    from tests.connect_support import connected_seller

    twin = builtin_connect(world.app.extensions["settings"], world.app.extensions["redis"], notify=world.events.append)
    seller, _ = connected_seller(world.session, twin, balance=balance)
    world.session.commit()
    return seller.id


def send_transfer(world: World) -> tuple[Any, ...]:
    from app.services import payouts

    seller_id = _connect_seller(world, balance=3000)
    payout = payouts.request_payout(world.session, seller_id, 2500, currency="usd", now=utcnow())
    world.session.commit()
    return (str(payout.id),), "sent"


def run_automatic_payouts(world: World) -> tuple[Any, ...]:
    from app.services import connect

    seller_id = _connect_seller(world, balance=3000)
    connect.set_schedule(world.session, seller_id, "weekly", now=utcnow())
    world.session.commit()
    return (), 1


def deliver_builtin_connect_event(world: World) -> tuple[Any, ...]:
    """The ``account.updated`` the twin sends when onboarding completes, to the app's own webhook."""
    _connect_seller(world, balance=0)
    (event,) = [e for e in world.events if e["type"] == "account.updated"]
    return (event,), 200


SCENARIOS: dict[str, Callable[[World], tuple[Any, ...]]] = {
    "tasks.automatic_payouts.run_automatic_payouts": run_automatic_payouts,
    "tasks.builtin_connect.deliver_builtin_connect_event": deliver_builtin_connect_event,
    "tasks.builtin_payments.deliver_builtin_webhook": deliver_builtin_webhook,
    "tasks.call_endings.end_call": end_call,
    "tasks.call_endings.refund_buyer": refund_buyer,
    "tasks.call_endings.release_room": release_room,
    "tasks.call_presence.start_room": start_room,
    "tasks.calls.provision_room": provision_room,
    "tasks.daily_events.poll_daily_presence": poll_daily_presence,
    "tasks.daily_events.process_daily_event": process_daily_event,
    "tasks.email_delivery.send_email": send_email,
    "tasks.maintenance.ping": ping,
    "tasks.maintenance.sweep": sweep,
    "tasks.maintenance.sweep_full_history": sweep_full_history,
    "tasks.photos.delete_profile_photos": delete_profile_photos,
    "tasks.problems.refund_problem": refund_problem,
    "tasks.request_payments.capture_accepted": capture_accepted,
    "tasks.request_payments.release_hold": release_hold,
    "tasks.stripe_events.process_stripe_event": process_stripe_event,
    "tasks.transfers.send_transfer": send_transfer,
}


def registered(app: Flask) -> list[str]:
    return sorted(name for name in app.extensions["celery"].tasks if name.startswith("tasks."))


def test_every_registered_task_has_a_scenario(app) -> None:  # type: ignore[no-untyped-def]
    assert registered(app) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_task_runs(name, served_app, committed_db, redis) -> None:  # type: ignore[no-untyped-def]
    task = served_app.extensions["celery"].tasks[name]
    with served_app.app_context():
        world = World(app=served_app, session=committed_db)
        args, expected = SCENARIOS[name](world)
        outcome = run(task, *args)
    if expected is not None:
        assert outcome == expected
    else:
        assert outcome

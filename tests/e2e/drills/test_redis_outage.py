"""Drill: Redis is stopped while signed webhooks arrive, then started again.

The webhook stores each event in the inbox and answers 200 even with the broker gone (the task it
could not publish is left to the sweep); once Redis is back, the worker and beat reconnect on
their own, and the sweep re-publishes every event still RECEIVED a minute after it arrived
(``REQUEUE_AFTER`` in app/services/stripe_events.py). Every event is delivered twice, as Stripe
may; in the end each payment has exactly one transaction, one request and two emails.

Celery 5.7 with kombu 5.7 sometimes EXITS (code 1) when its Redis connection drops while a message
is unacknowledged: closing the broken channel restores unacked messages through a transport whose
client is already gone (AttributeError in kombu's ``Channel._connparams``, "Unrecoverable error").
A platform running the Procfile restarts such a worker; the drill does the same and prints it.
"""

from __future__ import annotations

import time

from tests.e2e.drills.conftest import wait_for
from tests.e2e.drills.flow import paid_checkouts, post_event, seed_seller

EVENTS = 12
# The sweep leaves an unprocessed event alone for 60 s after it arrived; then the worker needs a
# moment. Waiting longer than this means the event was lost.
RECOVERY_TIMEOUT = 100


def test_webhooks_during_a_redis_outage_are_processed_exactly_once(make_drill) -> None:  # type: ignore[no-untyped-def]
    drill = make_drill("redis-outage")
    drill.start_all()
    # In production a platform restarts a worker that exits; so does the drill. Celery 5.7 may
    # exit on the lost connection (see the report printed below), and the drill counts it.
    drill.supervise()
    seller = seed_seller(drill)
    events = paid_checkouts(drill, seller, EVENTS, tag="redis")
    before, during, after = events[:4], events[4:9], events[9:]
    statuses: list[int] = []

    def deliver_twice(batch: list[dict]) -> None:
        for event in batch + batch:
            statuses.append(post_event(drill, event).status_code)

    deliver_twice(before)
    wait_for(lambda: _count(drill, "call_requests") == len(before), timeout=30, what="the first requests")

    drill.stop_redis()
    outage_started = time.monotonic()
    slowest = time.monotonic()
    deliver_twice(during)
    slowest = (time.monotonic() - slowest) / (2 * len(during))
    health_status, health = drill.health()
    assert (health_status, health["redis"], health["db"]) == (503, "down", "ok")
    drill.start_redis()
    outage = time.monotonic() - outage_started
    restarted = time.monotonic()

    deliver_twice(after)
    assert statuses == [200] * (2 * EVENTS), statuses

    def all_processed() -> bool:
        waiting = drill.scalar("SELECT count(*) FROM stripe_events WHERE status <> 'processed'")
        return waiting == 0 and _count(drill, "email_outbox", "status = 'sent'") == 2 * EVENTS

    wait_for(
        all_processed,
        timeout=RECOVERY_TIMEOUT,
        what="every event processed and every email sent",
        interval=0.5,
        detail=lambda: {
            "inbox": drill.statuses("stripe_events"),
            "outbox": drill.statuses("email_outbox"),
            "health": drill.health(),
            "logs": drill.recent_logs(),
        },
    )
    recovered = time.monotonic() - restarted

    counts = {
        "webhook posts": len(statuses),
        "inbox events": _count(drill, "stripe_events"),
        "processed": _count(drill, "stripe_events", "status = 'processed'"),
        "re-published by the sweep": _count(drill, "stripe_events", "attempts > 0"),
        "transactions": _count(drill, "transactions"),
        "requests": _count(drill, "call_requests"),
        "distinct paid sessions": drill.scalar(
            "SELECT count(DISTINCT t.stripe_checkout_session_id) FROM call_requests r"
            " JOIN transactions t ON t.id = r.transaction_id"
        ),
        "emails": _count(drill, "email_outbox"),
        "distinct email causes": drill.scalar("SELECT count(DISTINCT dedupe_key) FROM email_outbox"),
        "emails sent": _count(drill, "email_outbox", "status = 'sent'"),
        "tasks ahead of their commit": drill.tasks_ahead_of_their_commit(),
    }
    if drill.crashes:
        print(
            f"\ndrill redis-outage: WARNING the worker crashed {drill.worker_crashes()} time(s) on the lost"
            f" connection; restarted as a platform would (exits: {drill.crashes})"
        )
    print(
        f"\ndrill redis-outage: Redis down {outage:.1f} s (webhook answered in {slowest * 1000:.0f} ms on average"
        f" meanwhile); everything processed {recovered:.1f} s after the restart"
    )
    print("drill redis-outage counts: " + ", ".join(f"{name} {value}" for name, value in counts.items()))
    assert counts == {
        "webhook posts": 2 * EVENTS,
        "inbox events": EVENTS,
        "processed": EVENTS,
        # Only the events that arrived while Redis was down needed the sweep.
        "re-published by the sweep": len(during),
        "transactions": EVENTS,
        "requests": EVENTS,
        "distinct paid sessions": EVENTS,
        "emails": 2 * EVENTS,
        "distinct email causes": 2 * EVENTS,
        "emails sent": 2 * EVENTS,
        "tasks ahead of their commit": 0,
    }


def _count(drill, table: str, where: str = "true") -> int:  # type: ignore[no-untyped-def]
    return drill.scalar(f"SELECT count(*) FROM {table} WHERE {where}")  # noqa: S608 (constants only)

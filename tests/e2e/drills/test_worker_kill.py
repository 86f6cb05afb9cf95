"""Drill: the only worker is SIGKILLed (with its pool children) while calls are running.

The dead worker held every call's ``end_call`` ETA task in memory, unacknowledged; Redis hands
those messages back only after the visibility timeout (15 minutes). A replacement worker starts
at once, as an operator's supervisor would, and the beat sweep (every second here) must end each
call on time anyway. Emails go to a fake Postmark, so "no email sent twice" is counted where it
matters: the messages Postmark received, per outbox row.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

from tests.e2e.drills.conftest import wait_for
from tests.e2e.drills.flow import (
    accept,
    buyer_join_url,
    enter_call,
    log_in,
    pay_builtin,
    post_event,
    seed_seller,
    start_checkout,
    wait_request,
)
from tests.fakes.postmark import FakePostmark

CALLS = 3
DURATION = 12  # seconds: long enough for the replacement worker to be up before the calls end
# The sweep runs every second; a call may end this much after its ends_at and still be on time.
ON_TIME = timedelta(seconds=3)


def test_calls_end_on_time_and_no_email_is_sent_twice_after_a_worker_is_killed(make_drill) -> None:  # type: ignore[no-untyped-def]
    with FakePostmark() as postmark:
        drill = make_drill(
            "worker-kill",
            CALL_DURATION_SECONDS=str(DURATION),
            JOIN_WINDOW_SECONDS="300",
            POSTMARK_SERVER_TOKEN="drill-postmark-token",
            POSTMARK_API_BASE=postmark.url,
        )
        drill.start_all()
        seller = seed_seller(drill)
        seller_http = log_in(drill, seller)
        sessions = [start_checkout(drill, seller, f"kill{n}@buyers.example.org") for n in range(CALLS)]
        for session_id in sessions:
            assert post_event(drill, pay_builtin(drill, session_id)).status_code == 200
        calls = [wait_request(drill, session_id) for session_id in sessions]
        links = {call: (accept(drill, seller_http, call)["joinUrl"], buyer_join_url(drill, call)) for call in calls}
        # Start from a quiet outbox, so the kill hits the calls and not an email in flight (Postmark
        # has no idempotency key: a send cut off after Postmark took it is the one duplicate no
        # outbox can rule out).
        wait_for(lambda: "pending" not in drill.statuses("email_outbox"), timeout=30, what="a quiet outbox")

        for call, (seller_link, buyer_link) in links.items():
            enter_call(drill, call, seller_link)
            assert enter_call(drill, call, buyer_link)["startedAt"] is not None
        # Each end_call ETA task is now held by the worker; wait until it has them all.
        wait_for(
            lambda: _held_end_tasks(drill) >= CALLS,
            timeout=15,
            what="the worker to hold every call's end_call task",
        )
        drill.kill("worker")
        killed = time.monotonic()
        drill.start("worker", name="worker-2")  # as a supervisor would

        def all_ended() -> bool:
            return drill.scalar("SELECT count(*) FROM call_requests WHERE status = 'COMPLETED'") == CALLS

        wait_for(
            all_ended, timeout=DURATION + 45, what="every call to end", detail=lambda: drill.statuses("call_requests")
        )
        wait_for(
            lambda: "pending" not in drill.statuses("email_outbox"),
            timeout=45,
            what="every email delivered",
            detail=lambda: drill.statuses("email_outbox"),
        )

        ended = drill.rows("SELECT ends_at, ended_at, ended_by FROM call_requests ORDER BY ends_at")
        lateness = [row.ended_at - row.ends_at for row in ended]
        outbox = drill.rows("SELECT id::text AS id, status, dedupe_key FROM email_outbox")
        received = Counter(body.get("Metadata", {}).get("email_id") for body in postmark.sent)
        counts = {
            "calls": len(ended),
            "ended by": dict(Counter(row.ended_by for row in ended)),
            "latest end after ends_at (s)": round(max(lateness).total_seconds(), 2),
            "earnings": drill.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'earning'"),
            "outbox emails": len(outbox),
            "distinct causes": len({row.dedupe_key for row in outbox}),
            "sent": sum(row.status == "sent" for row in outbox),
            "messages Postmark received": len(postmark.sent),
            "emails received twice": sum(1 for n in received.values() if n > 1),
            "tasks ahead of their commit": drill.tasks_ahead_of_their_commit(),
        }
        print(f"\ndrill worker-kill: worker SIGKILLed; every call over {time.monotonic() - killed:.1f} s later")
        print("drill worker-kill counts: " + ", ".join(f"{name} {value}" for name, value in counts.items()))

        assert all(timedelta(0) <= late <= ON_TIME for late in lateness), lateness
        assert counts["earnings"] == CALLS
        assert counts["outbox emails"] == counts["distinct causes"] == counts["sent"]
        # Every outbox row reached Postmark exactly once, and Postmark got nothing else.
        assert sorted(received) == sorted(row.id for row in outbox)
        assert counts["emails received twice"] == counts["tasks ahead of their commit"] == 0
        assert counts["messages Postmark received"] == counts["sent"]
        # Each call: the new request and the payment (2), the room's link (1), the end (2).
        assert Counter(row.dedupe_key.split(":")[0] for row in outbox) == {
            "request_created": CALLS,
            "payment_received": CALLS,
            "call_ready": CALLS,
            "call_completed": 2 * CALLS,
        }


def _held_end_tasks(drill) -> int:  # type: ignore[no-untyped-def]
    """``end_call`` tasks the first worker has received (ETA tasks wait in its memory until due)."""
    lines = drill.logs("worker").splitlines()
    return sum(1 for line in lines if "Task tasks.call_endings.end_call[" in line and "] received" in line)

"""Drill: two machines (web, worker and beat on each) behind one PostgreSQL and one Redis.

A buyer pays through machine A and Stripe's webhook lands on machine B; the seller, logged in on
A, accepts on B; the seller's call page talks to A and the buyer's to B, and the call ends once.
A photo uploaded through A is served by B. The forgot-password limit counts requests on both
machines together. Meanwhile two beats sweep every second: two pending requests expire and one
accepted call whose parties never come is a seller no-show, and every one of those effects
(audit events, ledger rows, emails sent, payments released or refunded) happens exactly once.
The browser half (the built-in room's two pages on different machines, connected through Redis
signalling) is ``tests/e2e/browser/test_scale_out_room.py``.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

import requests
from PIL import Image

from tests.e2e.drills.conftest import Drill, wait_for
from tests.e2e.drills.flow import (
    accept,
    browser,
    buyer_join_url,
    enter_call,
    log_in,
    seed_seller,
)
from tests.e2e.drills.scale_out import events_seen, paid_request, print_events, scale_out_stack, stop_beats
from tests.fakes.postmark import FakePostmark

DURATION = 6  # seconds of call
TTL = 25  # seconds a request waits for the seller; the two left unanswered expire
JOIN_WINDOW = 20  # seconds to join after accept; the call nobody joins is a seller no-show


def test_two_machines_share_sessions_photos_limits_calls_and_sweep_each_effect_once() -> None:
    with (
        FakePostmark() as postmark,
        scale_out_stack(
            "scale-out",
            CALL_DURATION_SECONDS=str(DURATION),
            REQUEST_TTL_SECONDS=str(TTL),
            JOIN_WINDOW_SECONDS=str(JOIN_WINDOW),
            POSTMARK_SERVER_TOKEN="drill-postmark-token",
            POSTMARK_API_BASE=postmark.url,
        ) as stack,
    ):
        a, b = stack.a, stack.b
        seller = seed_seller(a)
        seller_http = log_in(a, seller)
        # A login on A is a login on B: the session cookie is signed with the shared SECRET_KEY
        # and checked against the shared database.
        assert seller_http.get(f"{b.url}/api/profile", timeout=10).status_code == 200
        assert requests.get(f"{b.url}/api/profile", timeout=10).status_code == 401

        photo_path = upload_photo(a, seller_http)
        served_by_b = requests.get(f"{b.url}/media/{photo_path}", timeout=10)
        assert served_by_b.status_code == 200
        assert served_by_b.content == requests.get(f"{a.url}/media/{photo_path}", timeout=10).content
        assert photo_path in stack.s3.keys(stack.bucket)
        assert not [path for m in ("a", "b") for path in Path(stack.instance_path(m)).glob("uploads/**/*.jpg")]

        assert_forgot_limit_is_shared(a, b)

        # The main call: pay through A, webhook on B, accept on B, each party's page on its machine.
        main = paid_request(stack, seller, "main", checkout_on=a, webhook_on=b)
        seller_link = accept(b, seller_http, main)["joinUrl"]
        buyer_link = buyer_join_url(a, main)
        expiring = [paid_request(stack, seller, f"late{n}", checkout_on=m, webhook_on=m) for n, m in enumerate((a, b))]
        no_show = paid_request(stack, seller, "absent", checkout_on=b, webhook_on=a)
        accept(a, seller_http, no_show)
        enter_call(a, main, seller_link)
        assert enter_call(b, main, buyer_link)["startedAt"] is not None

        def settled() -> bool:
            statuses = dict(a.rows("SELECT id, status FROM call_requests"))
            return (
                statuses[main] == "COMPLETED"
                and all(statuses[r] == "CANCELLED" for r in (*expiring, no_show))
                and "pending" not in a.statuses("email_outbox")
                and not a.scalar("SELECT count(*) FROM transactions WHERE payment_state = 'held'")
            )

        wait_for(settled, timeout=TTL + JOIN_WINDOW + 60, what="every request settled", detail=lambda: state(a))
        # Both beats keep sweeping the settled rows for a few more seconds: nothing may happen twice.
        time.sleep(5)
        sweeps = stop_beats(a)
        seen = events_seen(a, sweeps)
        print_events(seen)
        print(f"drill scale-out counts: {state(a)}")
        assert_each_effect_once(a, postmark, main=main, expiring=expiring, no_show=no_show)
        # The drill really ran on two of everything: both webs served, the workers ran the tasks,
        # and both beats swept all along (every second, for at least the requests' time to live).
        assert all(seen[f"web-{m}"] for m in ("a", "b"))
        assert sum(seen["worker-a"].values()) + sum(seen["worker-b"].values()) > 0
        assert min(sweeps.values()) >= TTL, sweeps


def upload_photo(a: Drill, http: requests.Session) -> str:
    image = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 120, 200)).save(image, format="PNG")
    response = http.post(f"{a.url}/api/profile/photo", files={"photo": ("me.png", image.getvalue())}, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()["photoUrl"].split("/media/", 1)[1]


def assert_forgot_limit_is_shared(a: Drill, b: Drill) -> None:
    """5 requests a minute per client address, counted in Redis: alternate machines and the sixth
    is refused wherever it lands."""
    client = browser(a)  # one client address (X-Forwarded-For), one cookie jar for both machines
    statuses = [
        client.post(f"{m.url}/api/auth/forgot", json={"email": "nobody@example.org"}, timeout=10).status_code
        for m in (a, b, a, b, a, b, a)
    ]
    assert statuses == [202] * 5 + [429, 429], statuses


def state(a: Drill) -> dict[str, object]:
    return {
        "requests": a.statuses("call_requests"),
        "payments": dict(a.rows("SELECT payment_state, count(*) FROM transactions GROUP BY payment_state")),
        "outbox": a.statuses("email_outbox"),
        "earnings": a.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'earning'"),
    }


def assert_each_effect_once(a: Drill, postmark: FakePostmark, *, main, expiring, no_show) -> None:  # type: ignore[no-untyped-def]
    reasons = dict(a.rows("SELECT id, cancel_reason FROM call_requests WHERE status = 'CANCELLED'"))
    assert [reasons[r] for r in expiring] == ["expired", "expired"]
    assert reasons[no_show] == "seller_no_show"
    # One audit event of each kind per request: no step ran twice for the same row.
    events = a.rows("SELECT type, ref_id FROM event_log WHERE type NOT LIKE 'auth.%'")
    repeated = {key: n for key, n in Counter((row.type, row.ref_id) for row in events).items() if n > 1}
    assert repeated == {}
    per_request = Counter(row.type for row in events if row.ref_id in {str(r) for r in (main, *expiring, no_show)})
    assert per_request["request.expired"] == 2 and per_request["call.ended"] == 1
    # Money: one earning (the completed call), holds released, the no-show refunded, each once.
    assert a.rows("SELECT call_request_id FROM ledger_entries") == [(main,)]
    payments = dict(
        a.rows(
            "SELECT r.id, t.payment_state FROM call_requests r JOIN transactions t ON t.id = r.transaction_id",
        )
    )
    assert payments[main] == "captured" and payments[no_show] in ("refunded", "voided")
    assert all(payments[r] == "voided" for r in expiring)
    # Every email reached Postmark exactly once, and Postmark got nothing else.
    outbox = a.rows("SELECT id::text AS id, status FROM email_outbox")
    received = Counter(body.get("Metadata", {}).get("email_id") for body in postmark.sent)
    assert sorted(received) == sorted(row.id for row in outbox)
    assert all(row.status == "sent" for row in outbox) and max(received.values()) == 1

"""Drill: PostgreSQL is stopped under load and started again.

Load: buyers opening checkouts (JSON API), visitors on the paywall (a page), the seller's request
list (JSON, logged in), health checks, and Stripe delivering signed webhooks, redelivering any
that did not get a 2xx, as Stripe does. While the database is down every answer must be a clean
503 (``{"error": {"code": "unavailable", ...}}`` on the API, the friendly page elsewhere, health
naming the database); afterwards everything must work again, and nothing may be half-written:
no checkout without its session, no transaction without its request, no request without its emails.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.e2e.drills.conftest import Drill, wait_for
from tests.e2e.drills.flow import browser, log_in, paid_checkouts, post_event, seed_seller

EVENTS = 10
OUTAGE_SECONDS = 4.0
UNAVAILABLE_PAGE = "briefly unavailable"


@dataclass
class Outcome:
    kind: str
    sent: float  # time.monotonic() when the request was sent
    at: float  # and when its answer (or failure) came
    status: int | None  # None: no HTTP answer at all
    clean: bool  # a 2xx, or a 503 of the documented shape


@dataclass
class Load:
    """Threads sending each kind of traffic in a loop, recording every answer."""

    drill: Drill
    outcomes: list[Outcome] = field(default_factory=list)
    checkout_sessions: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, kind: str, send: Callable[[], requests.Response], check: Callable[[requests.Response], bool]) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.record(kind, send, check)
                time.sleep(0.1)

        thread = threading.Thread(target=loop, name=f"load-{kind}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def record(
        self, kind: str, send: Callable[[], requests.Response], check: Callable[[requests.Response], bool]
    ) -> requests.Response | None:
        sent = time.monotonic()
        try:
            response: requests.Response | None = send()
        except requests.RequestException:
            response = None
        status = response.status_code if response is not None else None
        clean = response is not None and ((200 <= response.status_code < 300 and check(response)) or _is_503(response))
        with self._lock:
            self.outcomes.append(Outcome(kind, sent, time.monotonic(), status, clean))
        return response

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def answers(self, after: float = 0.0) -> Counter[tuple[str, int | None]]:
        return Counter((o.kind, o.status) for o in list(self.outcomes) if o.at >= after)

    def seen(self, kind: str, status: int, sent_after: float = 0.0) -> bool:
        return any(o.kind == kind and o.status == status and o.sent >= sent_after for o in list(self.outcomes))


def _is_503(response: requests.Response) -> bool:
    """The documented outage answers: JSON under /api/, the friendly page elsewhere."""
    if response.status_code != 503:
        return False
    if "/api/" not in response.url:
        return "text/html" in response.headers.get("Content-Type", "") and UNAVAILABLE_PAGE in response.text
    body = response.json()
    if "/api/health" in response.url:
        return body.get("status") == "unavailable" and body.get("db") == "down"
    return body["error"]["code"] == "unavailable" and body["error"]["fields"] == {"service": "database"}


def test_postgres_restart_under_load_answers_503_then_recovers_with_nothing_half_written(make_drill) -> None:  # type: ignore[no-untyped-def]
    drill = make_drill("postgres-restart")
    drill.start_all()
    seller = seed_seller(drill)
    seller_http = log_in(drill, seller)
    events = paid_checkouts(drill, seller, EVENTS, tag="pg")
    load = Load(drill)
    _start_traffic(load, drill, seller.slug, seller_http)
    # Stripe gets a third of the payments before the outage, a third during it, the rest after.
    stripe = StripeDeliveries(load, drill)
    stripe.hand_over(events[:3])
    time.sleep(2)
    drill.stop_postgres()
    stopped = time.monotonic()
    stripe.hand_over(events[3:6])
    kinds = ("checkout", "paywall", "requests", "health", "webhook")
    wait_for(
        lambda: all(load.seen(kind, 503, stopped) for kind in kinds),
        timeout=20,
        what="503s of every kind",
        detail=lambda: load.answers(after=stopped),
    )
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    drill.start_postgres()
    restarted = time.monotonic()
    outage = restarted - stopped
    stripe.hand_over(events[6:])

    def recovered() -> bool:
        return all(load.seen(kind, 201 if kind == "checkout" else 200, restarted) for kind in kinds)

    wait_for(
        recovered,
        timeout=30,
        what="every kind of request to succeed again",
        detail=lambda: load.answers(after=restarted),
    )
    # From the restart to the first answered success of a request sent after it.
    recovery = min(o.at for o in load.outcomes if o.sent > restarted and o.status in (200, 201)) - restarted
    wait_for(lambda: len(stripe.delivered) == EVENTS, timeout=30, what="every event to get a 2xx")
    load.stop()
    for event in events:  # Stripe delivers at least once: every event once more
        assert post_event(drill, event).status_code == 200

    def settled() -> bool:
        return drill.statuses("stripe_events") == {"processed": EVENTS} and "pending" not in drill.statuses(
            "email_outbox"
        )

    wait_for(
        settled,
        timeout=75,
        what="every event processed and every email sent",
        interval=0.5,
        detail=lambda: {"inbox": drill.statuses("stripe_events"), "outbox": drill.statuses("email_outbox")},
    )
    _report_and_check(load, drill, outage, recovery)


def _start_traffic(load: Load, drill: Drill, slug: str, seller_http: requests.Session) -> None:
    url = drill.url

    def checkout() -> requests.Response:
        email = f"load-{uuid.uuid4().hex[:8]}@buyers.example.org"
        response = browser(drill).post(
            f"{url}/api/payments/checkout", json={"slug": slug, "buyerEmail": email}, timeout=15
        )
        if response.status_code == 201:
            with load._lock:
                load.checkout_sessions.append(response.json()["sessionId"])
        return response

    load.run("checkout", checkout, lambda r: r.status_code == 201)
    load.run("paywall", lambda: requests.get(f"{url}/u/{slug}", timeout=15), lambda r: "Drill Seller" in r.text)
    load.run("requests", lambda: seller_http.get(f"{url}/api/requests", timeout=15), lambda r: "requests" in r.json())
    load.run("health", lambda: requests.get(f"{url}/api/health", timeout=15), lambda r: r.json()["db"] == "ok")


@dataclass
class StripeDeliveries:
    """Stripe's side: each event handed over is posted until it gets a 2xx; one without goes back
    in line and is sent again a little later (Stripe retries with backoff)."""

    load: Load
    drill: Drill
    delivered: set[str] = field(default_factory=set)
    _line: deque[dict[str, Any]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        threading.Thread(target=self._deliver, name="load-stripe", daemon=True).start()

    def hand_over(self, events: list[dict[str, Any]]) -> None:
        self._line.extend(events)

    def _deliver(self) -> None:
        while not self.load._stop.is_set():
            if not self._line:
                time.sleep(0.05)
                continue
            event = self._line.popleft()
            response = self.load.record("webhook", lambda e=event: post_event(self.drill, e), lambda r: True)
            if response is not None and response.status_code == 200:
                self.delivered.add(event["id"])
            else:
                self._line.append(event)
            time.sleep(0.3)


def _report_and_check(load: Load, drill: Drill, outage: float, recovery: float) -> None:
    answers = Counter((o.kind, o.status) for o in load.outcomes)
    unclean = [o for o in load.outcomes if not o.clean]
    half_written = {
        "checkouts without a session": drill.scalar(
            "SELECT count(*) FROM checkouts WHERE stripe_checkout_session_id IS NULL OR checkout_url IS NULL"
        ),
        "transactions without a request": drill.scalar(
            "SELECT count(*) FROM transactions t WHERE NOT EXISTS"
            " (SELECT 1 FROM call_requests r WHERE r.transaction_id = t.id)"
        ),
        "requests without both emails": drill.scalar(
            "SELECT count(*) FROM call_requests r WHERE (SELECT count(*) FROM email_outbox e"
            " WHERE e.dedupe_key IN ('request_created:seller:' || r.id, 'payment_received:buyer:' || r.id)) <> 2"
        ),
        "completed checkouts without a transaction": drill.scalar(
            "SELECT count(*) FROM checkouts c WHERE c.status = 'complete' AND NOT EXISTS"
            " (SELECT 1 FROM transactions t WHERE t.stripe_checkout_session_id = c.stripe_checkout_session_id)"
        ),
    }
    created = set(load.checkout_sessions)
    stored = {row[0] for row in drill.rows("SELECT stripe_checkout_session_id FROM checkouts")}
    counts = {
        "inbox events": drill.scalar("SELECT count(*) FROM stripe_events"),
        "transactions": drill.scalar("SELECT count(*) FROM transactions"),
        "requests": drill.scalar("SELECT count(*) FROM call_requests"),
        "emails": drill.scalar("SELECT count(*) FROM email_outbox"),
        "emails sent": drill.scalar("SELECT count(*) FROM email_outbox WHERE status = 'sent'"),
        "checkouts answered 201": len(created),
        "checkouts stored": len(stored),
        "tasks ahead of their commit": drill.tasks_ahead_of_their_commit(),
    }
    print(f"\ndrill postgres-restart: PostgreSQL down {outage:.1f} s; first success {recovery:.2f} s after the restart")
    print("drill postgres-restart answers: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(answers.items())))
    print("drill postgres-restart counts: " + ", ".join(f"{name} {value}" for name, value in counts.items()))
    print(
        "drill postgres-restart half-written: " + ", ".join(f"{name} {value}" for name, value in half_written.items())
    )

    assert unclean == [], unclean[:10]
    assert set(half_written.values()) == {0}
    # Every 201 was kept; only the EVENTS paid sessions made before the load are stored besides.
    assert created <= stored and len(stored) == len(created) + EVENTS
    assert counts["inbox events"] == counts["transactions"] == counts["requests"] == EVENTS
    assert counts["emails"] == counts["emails sent"] == 2 * EVENTS
    assert counts["tasks ahead of their commit"] == 0

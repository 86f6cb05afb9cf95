"""How long a change takes to show on the other party's open page: the scenario shared by the
browser test (tests/e2e/browser/test_live_updates.py) and the benchmark (bench/live_updates.py).

Two real Chromium contexts against the whole stack (gunicorn with several processes, a Celery
worker): the seller's dashboard stays open, the buyer pays on the seller's page and keeps their
status page open. Changes alternate between:

* ``paid``: the buyer pays (built-in checkout → signed webhook → worker → lifecycle); measured
  until the new request is on the seller's open dashboard;
* ``accept`` / ``decline``: the seller answers through the JSON API; measured until the buyer's
  open status page says so;
* ``cancel``: the buyer cancels from their status page; measured until the request is gone from
  the seller's open dashboard.

Both open pages must change in place: a reload (the no-JavaScript fallback) fails the scenario.
Each measurement runs from just before the action to the moment Playwright sees the other page
change (its own polling adds a few tens of milliseconds, so the figures are pessimistic).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.e2e.browser import pages

KINDS = ("paid", "accept", "paid", "decline", "paid", "cancel")


@dataclass
class Change:
    kind: str
    seconds: float


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class Scenario:
    def __init__(self, url: str, make_context: Callable[[], Any], seller_email: str, password: str, slug: str) -> None:
        self.url, self.slug = url, slug
        self.seller = make_context().new_page()
        self.buyer = make_context().new_page()
        pages.log_in(self.seller, url, seller_email, password)
        self.seller.goto(f"{url}/dashboard")
        self.token = self.seller.request.get(f"{url}/api/auth/csrf").json()["csrfToken"]
        self.request_id: str | None = None
        self.buyer_email = ""

    def dashboard_item(self, email: str) -> Any:
        return self.seller.locator("#request-list li.pending", has_text=email)

    def run(self, count: int) -> list[Change]:
        # A first purchase and answer, not measured: the worker's processes import and connect on
        # their first tasks, which says nothing about live pages.
        self.paid()
        self.accept()
        changes = []
        for n in range(count):
            kind = KINDS[n % len(KINDS)]
            changes.append(Change(kind, getattr(self, kind)()))
        return changes

    def paid(self) -> float:
        self.buyer_email = f"live-{uuid.uuid4().hex[:8]}@example.org"
        pages.request_call(self.buyer, self.url, self.slug, email=self.buyer_email, note="Live update check")
        started = time.monotonic()
        pages.pay(self.buyer)
        self.dashboard_item(self.buyer_email).wait_for(timeout=30000)
        seconds = time.monotonic() - started
        pages.status_says(self.buyer, "pending")
        self.buyer.evaluate("() => { window.sameDocument = true; }")  # lost if the page ever reloaded
        self.request_id = self.dashboard_item(self.buyer_email).get_attribute("data-id")
        return seconds

    def _answer(self, action: str, state: str) -> float:
        started = time.monotonic()
        answer = self.seller.request.post(
            f"{self.url}/api/requests/{self.request_id}/{action}", headers={"X-CSRFToken": self.token}
        )
        assert answer.ok, answer.text()
        pages.status_says(self.buyer, state)
        seconds = time.monotonic() - started
        assert self.buyer.evaluate("() => window.sameDocument === true"), "the status page reloaded"
        return seconds

    def accept(self) -> float:
        return self._answer("accept", "accepted")

    def decline(self) -> float:
        return self._answer("decline", "declined")

    def cancel(self) -> float:
        started = time.monotonic()
        self.buyer.get_by_role("button", name="Cancel my request").click()
        self.dashboard_item(self.buyer_email).wait_for(state="detached", timeout=30000)
        seconds = time.monotonic() - started
        pages.status_says(self.buyer, "cancelled")
        return seconds


def report(changes: list[Change]) -> str:
    lines = [f"{'#':>3} {'change':<8} {'seconds':>8}"]
    lines += [f"{n:>3} {c.kind:<8} {c.seconds:>8.3f}" for n, c in enumerate(changes, 1)]
    values = [c.seconds for c in changes]
    ordered = sorted(values)
    lines.append(
        f"\n{len(values)} changes: p50 {ordered[len(ordered) // 2]:.3f} s, p95 {p95(values):.3f} s, "
        f"max {ordered[-1]:.3f} s (goal: p95 <= 2 s)"
    )
    return "\n".join(lines)

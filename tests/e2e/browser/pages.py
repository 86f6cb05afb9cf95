"""What a seller and a buyer do in the browser, as small helpers the end-to-end tests share.

Each helper drives the real pages (labels and roles, as a person finds them), waits for a
visible outcome rather than sleeping, and leaves the page where the next step starts.
"""

from __future__ import annotations

import io
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from PIL import Image, ImageDraw
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import db, utcnow
from app.integrations.video import BuiltinVideo
from app.models import CallRequest, PaymentState, Profile, RequestStatus, Role, Transaction, User
from app.services import calls
from app.services.calls import CallConfig
from tests.factories import PASSWORD, PASSWORD_HASH


@dataclass
class Mailbox:
    """The built-in outbox, read through ``GET /dev/mailbox.json``."""

    url: str

    def emails(self, recipient: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/dev/mailbox.json", params={"recipient": recipient, "limit": 100}, timeout=10)
        answer.raise_for_status()
        return answer.json()["emails"]

    def wait_for(self, recipient: str, template: str, *, timeout: float = 30) -> dict[str, Any]:
        """The newest email of ``template`` to ``recipient`` once the outbox task has sent it."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            emails = self.emails(recipient)
            seen = [f"{e['template']}:{e['status']}" for e in emails]
            sent = [e for e in emails if e["template"] == template and e["status"] == "sent"]
            if sent:
                return sent[0]
            time.sleep(0.3)
        raise AssertionError(f"no sent {template!r} email to {recipient} within {timeout} s; outbox: {seen}")

    def templates(self, recipient: str) -> list[str]:
        """Every template sent to ``recipient``, sorted (repeats show up as repeats)."""
        return sorted(e["template"] for e in self.emails(recipient))


def link_in(email: dict[str, Any], path_pattern: str) -> str:
    """The first absolute link in an email's text whose path matches ``path_pattern``."""
    match = re.search(r"https?://[^\s/]+" + path_pattern + r"[^\s]*", email["textBody"])
    assert match, f"no link to {path_pattern} in {email['template']}: {email['textBody']!r}"
    return match.group(0)


def png_photo(size: int = 640) -> bytes:
    """A generated portrait-ish PNG: a face-coloured disc on a blue background."""
    image = Image.new("RGB", (size, size), (40, 90, 160))
    ImageDraw.Draw(image).ellipse((size // 4, size // 6, 3 * size // 4, 5 * size // 6), fill=(230, 190, 150))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Shots:
    """Numbered full-page screenshots in the run's artifacts folder."""

    folder: Path
    prefix: str
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page, name: str) -> None:  # type: ignore[no-untyped-def]
        path = self.folder / f"{self.prefix}-{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


def wait_for_remote_video(page, *, timeout: float = 30) -> list[float]:  # type: ignore[no-untyped-def]
    """Wait until the other party's video has frames and its time advances (media really flows,
    not a frozen first frame); returns (video width, seconds it advanced)."""
    remote = "document.getElementById('remote-video')"
    # Functions, not bare expressions: Playwright evaluates a bare expression with eval(), which
    # the product's CSP (rightly) refuses.
    page.wait_for_function(f"() => {remote}.videoWidth > 0", timeout=timeout * 1000, polling=100)
    start = page.evaluate(f"() => {remote}.currentTime")
    page.wait_for_function(f"t => {remote}.currentTime > t + 0.5", arg=start, timeout=timeout * 1000, polling=100)
    return page.evaluate(f"() => [{remote}.videoWidth, {remote}.currentTime - {start}]")


def watch_errors(page, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Collect uncaught script errors and console errors (CSP refusals show up there too)."""
    page.on("pageerror", lambda error: problems.append(f"{page.url}: pageerror: {error}"))
    page.on("console", lambda msg: problems.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)


# --- The seller ------------------------------------------------------------------------------


def sign_up(page, url: str, email: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    """Sign up, then open the confirmation link from the dev mailbox, which logs the seller in."""
    page.goto(f"{url}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(r"/signup\?sent=1$"))
    page.goto(confirmation_link(page, url, email))
    page.wait_for_url(re.compile(r"/profile$"))


def confirmation_link(page, url: str, email: str, timeout: float = 30) -> str:  # type: ignore[no-untyped-def]
    """The verify-email link of ``email``'s newest confirmation, once the worker has sent it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        emails = page.request.get(f"{url}/dev/mailbox.json?recipient={email}").json()["emails"]
        for message in emails:
            found = re.search(r"https?://\S+/verify-email/\S+", message.get("textBody") or "")
            if message["template"] == "verify_email" and found:
                return found.group(0)
        time.sleep(0.25)
    raise AssertionError(f"no confirmation email for {email} within {timeout} s")


def log_in(page, url: str, email: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/(dashboard|admin)$"))  # an admin lands on the admin area


def save_profile(page, url: str, *, name: str, price: str, slug: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/profile")
    page.get_by_label("Display name").fill(name)
    page.get_by_label("Link", exact=True).fill(slug)
    page.get_by_label("Bio").fill("I help founders price their first product.")
    page.get_by_label("Price per call").fill(price)
    page.get_by_role("button", name="Save profile").click()
    page.locator(".flash", has_text="Profile saved.").wait_for()


def upload_photo(page, photo: bytes) -> None:  # type: ignore[no-untyped-def]
    page.locator("input[type=file][name=photo]").set_input_files(
        {"name": "portrait.png", "mimeType": "image/png", "buffer": photo}
    )
    page.get_by_role("button", name="Upload photo").click()
    page.locator(".flash", has_text="Photo updated.").wait_for()


def accept_from_dashboard(page, buyer_email: str) -> None:  # type: ignore[no-untyped-def]
    """Accept ``buyer_email``'s request on the open dashboard (a plain form post)."""
    item = page.locator("#request-list li.pending", has_text=buyer_email)
    item.wait_for(timeout=30000)
    item.get_by_role("button", name="Accept").click()
    page.locator(".flash", has_text="Accepted").wait_for()


def decline_from_dashboard(page, buyer_email: str, message: str = "") -> None:  # type: ignore[no-untyped-def]
    """Decline ``buyer_email``'s request: open the second step, write the message, confirm."""
    item = page.locator("#request-list li.pending", has_text=buyer_email)
    item.wait_for(timeout=30000)
    item.locator("details.decline-box summary").click()
    if message:
        item.get_by_label("Message to the buyer (optional)").fill(message)
    item.get_by_role("button", name="Decline and release the hold").click()
    page.locator(".flash", has_text="Declined").wait_for()


# --- The buyer -------------------------------------------------------------------------------


def request_call(page, url: str, slug: str, *, email: str, note: str) -> None:  # type: ignore[no-untyped-def]
    """Fill the paywall form (opening the page unless it is open) and submit it: the page moves on
    to the checkout."""
    if not page.url.endswith(f"/u/{slug}"):
        page.goto(f"{url}/u/{slug}")
    page.get_by_label("Your email").fill(email)
    page.get_by_label("Note").fill(note)
    page.get_by_role("button", name=re.compile(r"^Request a call")).click()
    page.wait_for_url(re.compile(r"/dev/checkout/cs_"))


def pay(page) -> str:  # type: ignore[no-untyped-def]
    """Pay on the built-in checkout; returns the Checkout Session id from the status page's address."""
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    page.wait_for_url(re.compile(r"/success\?session_id=cs_"))
    return page.url.split("session_id=", 1)[1]


def status_says(page, state: str, *, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Wait until the buyer's status page shows ``state`` (it updates itself, no reload)."""
    page.locator(f'#buyer-status[data-status="{state}"] [data-state="{state}"]').wait_for(
        state="visible", timeout=timeout * 1000
    )


# --- Data made directly, for the paths that do not need the sign-up again --------------------


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """A committed unit of work on this run's database, or on ``engine``'s (a separate stack's)."""
    if engine is None:
        with db.session_scope() as session:
            yield session
    else:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session


def seed_seller(
    *, name: str = "Grace Hopper", price_cents: int = 2500, engine: Engine | None = None
) -> tuple[str, str]:
    """A verified, live seller with a password (``tests.factories.PASSWORD``): (email, slug)."""
    tag = uuid.uuid4().hex[:8]
    email, slug = f"seller-{tag}@example.com", f"seller-{tag}"
    with unit_of_work(engine) as session:
        user = User(email=email, password_hash=PASSWORD_HASH, role=Role.SELLER, email_verified_at=utcnow())
        session.add(user)
        session.flush()
        session.add(Profile(user_id=user.id, slug=slug, display_name=name, price_cents=price_cents, currency="usd"))
    return email, slug


def seed_admin() -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    with db.session_scope() as session:
        session.add(User(email=email, password_hash=PASSWORD_HASH, role=Role.ADMIN, email_verified_at=utcnow()))
    return email


def seed_call(
    settings: Settings, url: str, seller_email: str, *, status: RequestStatus = RequestStatus.ACCEPTED
) -> tuple[uuid.UUID, dict[str, str]]:
    """A paid request of ``seller_email``'s with its built-in room: (id, join links by party).
    PENDING leaves it waiting on the dashboard; COMPLETED makes it a call that took place."""
    tag = uuid.uuid4().hex[:10]
    now = utcnow()
    with db.session_scope() as session:
        seller = session.query(User).filter_by(email=seller_email).one()
        held = status == RequestStatus.PENDING
        transaction = Transaction(
            seller_id=seller.id,
            buyer_email=f"buyer-{tag}@example.org",
            stripe_checkout_session_id=f"cs_test_{tag}",
            stripe_payment_intent_id=f"pi_test_{tag}",
            gross_cents=2500,
            platform_fee_cents=500,
            net_cents=2000,
            currency="usd",
            payment_state=PaymentState.HELD if held else PaymentState.CAPTURED,
        )
        call = CallRequest(
            seller_id=seller.id,
            transaction=transaction,
            buyer_email=transaction.buyer_email,
            note="Could we talk about pricing?",
            status=RequestStatus.PENDING if held else RequestStatus.ACCEPTED,
            expires_at=now + timedelta(days=1),
            join_key=secrets.token_urlsafe(32),
        )
        if not held:
            call.accepted_at, call.join_deadline = now, now + timedelta(minutes=15)
        session.add(call)
        session.flush()
        links: dict[str, str] = {}
        if not held:
            config = CallConfig(settings.secret_key, url, 8)
            calls.provision_room(session, call.id, provider=BuiltinVideo(url), config=config, now=now)
            links = {
                party: calls.join_url(url, settings.secret_key, call, party) or "" for party in ("buyer", "seller")
            }
        if status == RequestStatus.COMPLETED:
            call.status = RequestStatus.COMPLETED
            call.started_at, call.ends_at, call.ended_at = now, now + timedelta(seconds=8), now + timedelta(seconds=8)
        return call.id, links

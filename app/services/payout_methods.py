"""The manual payout method: where an admin sends a seller's money when Stripe Connect cannot.

A seller enters a bank account (holder and IBAN) or a PayPal email. The IBAN's ISO 13616 check
digits are verified (mod 97), so a mistyped digit is caught before any money is sent. The full
value is stored encrypted (Fernet, keyed by a key derived from ``SECRET_KEY`` with HKDF, so a
database dump alone does not reveal it); the seller only ever sees the last four characters again,
and an admin sees the whole value on the payout they process. Every change emails the seller, so
a change they did not make (a stolen session) does not go unnoticed.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.formats import iso
from app.models import PayoutMethodKind, PayoutRequest, PayoutSettings, PayoutStatus, User
from app.refusals import Invalid, NotFound
from app.services.audit import record_event, user_actor
from app.services.outbox import queue_email

HOLDER_MAX = 120
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_KEY_INFO = b"chatlink payout method v1"


@dataclass(frozen=True)
class MethodView:
    """What the seller sees of their method: never more than the last four characters."""

    kind: PayoutMethodKind
    holder: str | None
    last4: str
    updated_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind.value, "holder": self.holder, "last4": self.last4}

    @property
    def label(self) -> str:
        if self.kind == PayoutMethodKind.IBAN:
            return f"Bank account (IBAN) ending in {self.last4}"
        return f"PayPal account ending in {self.last4}"


def normalise_iban(raw: object) -> str:
    """``"de89 3704-0044 0532 0130 00"`` → ``"DE89370400440532013000"``, or ``Invalid``."""
    iban = re.sub(r"[\s-]", "", raw).upper() if isinstance(raw, str) else ""
    if not _IBAN_SHAPE.fullmatch(iban):
        raise Invalid("invalid_iban", "Enter an IBAN like DE89 3704 0044 0532 0130 00.", field="iban")
    if not iban_checksum_ok(iban):
        raise Invalid("invalid_iban", "This IBAN's check digits do not match: check it for a typo.", field="iban")
    return iban


def iban_checksum_ok(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, turn letters into 10..35, and the
    number must leave 1 when divided by 97."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == 1


def normalise_paypal(raw: object) -> str:
    try:
        return validate_email(raw if isinstance(raw, str) else "", check_deliverability=False).normalized
    except EmailNotValidError:
        raise Invalid("invalid_email", "Enter the email address of your PayPal account.", field="email") from None


def _holder(raw: object) -> str:
    holder = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not holder:
        raise Invalid("invalid", "Enter the account holder's name.", field="holder")
    if len(holder) > HOLDER_MAX:
        raise Invalid("invalid", f"Keep the holder's name under {HOLDER_MAX} characters.", field="holder")
    return holder


def _cipher(secret_key: str) -> Fernet:
    # Derived rather than SECRET_KEY itself: the session-signing key and this one never coincide.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(value: str, secret_key: str) -> str:
    return _cipher(secret_key).encrypt(value.encode()).decode()


def decrypt(token: str, secret_key: str) -> str | None:
    """The full value, or None if ``SECRET_KEY`` changed since it was stored (ask the seller again)."""
    try:
        return _cipher(secret_key).decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def set_method(
    session: Session,
    seller_id: uuid.UUID,
    body: dict[str, object],
    *,
    secret_key: str,
    now: datetime,
) -> MethodView:
    """Validate and store the seller's manual payout method (``kind`` iban with ``holder`` and
    ``iban``, or paypal with ``email``); the seller is emailed about the change."""
    kind = body.get("kind")
    if kind == PayoutMethodKind.IBAN.value:
        holder: str | None = _holder(body.get("holder"))
        value = normalise_iban(body.get("iban"))
    elif kind == PayoutMethodKind.PAYPAL.value:
        holder, value = None, normalise_paypal(body.get("email"))
    else:
        raise Invalid("invalid", "Choose a bank account (iban) or PayPal (paypal).", field="kind")
    seller = session.get(User, seller_id)
    if seller is None or seller.deleted_at is not None:
        raise NotFound("not_found", "No such seller.")
    settings = settings_for(session, seller_id, lock=True)
    settings.method_kind = PayoutMethodKind(kind)
    settings.method_holder = holder
    settings.method_last4 = value[-4:]
    settings.method_ciphertext = encrypt(value, secret_key)
    settings.method_updated_at = now
    view = method_view(settings)
    assert view is not None
    record_event(
        session, "payout.method_changed", ref_id=seller_id, actor=user_actor(seller_id), payload=view.as_json()
    )
    queue_email(
        session,
        recipient=seller.email,
        template="payout_method_changed",
        context={"method": view.label, "holder": holder or "", "changedAt": iso(now)},
        dedupe_key=f"payout_method_changed:{seller_id}:{now.isoformat()}",
    )
    return view


def settings_for(session: Session, seller_id: uuid.UUID, *, lock: bool = False) -> PayoutSettings:
    """The seller's payout settings row, created on first use (concurrent first uses meet on the
    UNIQUE seller_id: the loser reads the winner's row)."""
    query = select(PayoutSettings).where(PayoutSettings.seller_id == seller_id)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is not None:
        return found
    created = PayoutSettings(seller_id=seller_id)
    try:
        with session.begin_nested():
            session.add(created)
    except IntegrityError:  # someone created it first
        found = session.scalar(query.with_for_update() if lock else query)
        if found is None:
            raise
        return found
    return created


def method_view(settings: PayoutSettings | None) -> MethodView | None:
    if settings is None or settings.method_kind is None or not settings.method_last4:
        return None
    return MethodView(settings.method_kind, settings.method_holder, settings.method_last4, settings.method_updated_at)


def full_method(settings: PayoutSettings | None, secret_key: str) -> str | None:
    """The whole IBAN or PayPal address, for the admin who processes a payout: never for the seller."""
    if settings is None or settings.method_ciphertext is None:
        return None
    return decrypt(settings.method_ciphertext, secret_key)


@dataclass(frozen=True)
class Destination:
    """Where an admin sends one payout: the seller's method, in full only while it waits for them."""

    method: MethodView | None
    full_value: str | None


def admin_destinations(
    session: Session, payouts: list[PayoutRequest], *, secret_key: str
) -> dict[uuid.UUID, Destination]:
    """For each payout an admin pays by hand, the seller's method: the full IBAN or PayPal address
    on the ones still REQUESTED (the admin is about to send money there), the last four otherwise."""
    seller_ids = {payout.seller_id for payout in payouts}
    if not seller_ids:
        return {}
    rows = session.scalars(select(PayoutSettings).where(PayoutSettings.seller_id.in_(seller_ids)))
    by_seller = {row.seller_id: row for row in rows}
    found = {}
    for payout in payouts:
        settings = by_seller.get(payout.seller_id)
        waiting = payout.status == PayoutStatus.REQUESTED
        found[payout.id] = Destination(method_view(settings), full_method(settings, secret_key) if waiting else None)
    return found

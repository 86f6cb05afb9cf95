"""What Stripe Connect's webhook events do: ``account.updated`` and ``transfer.reversed``.

``app.services.stripe_events`` stores and dispatches every event; it takes these handlers into its
``HANDLERS``. As there, a handler never trusts the event body: it checks the object is one of ours,
fetches the account or transfer from the gateway and acts on what Stripe says now, so duplicates
and any delivery order end in the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.integrations.connect import ConnectGateway
from app.models import ConnectAccount, StripeEventStatus
from app.services import connect, transfers
from app.services.checkout import APP_TAG

if TYPE_CHECKING:
    from app.services.stripe_events import EventContext

Outcome = tuple[StripeEventStatus, str | None]


def handle_account_updated(ctx: EventContext, account: dict[str, Any]) -> Outcome:
    """Sync the seller's Connect account (payouts enabled, requirements due) from Stripe."""
    account_id = account.get("id")
    row = ctx.session.execute(
        select(ConnectAccount).where(ConnectAccount.stripe_account_id == account_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        return StripeEventStatus.IGNORED, "unknown account"
    snapshot = _gateway(ctx).retrieve_account(row.stripe_account_id)
    if not _is_ours(snapshot.metadata, ctx.app_env):
        return StripeEventStatus.IGNORED, "not ours"
    changed = connect.sync_account(ctx.session, row, snapshot, now=ctx.now)
    return StripeEventStatus.PROCESSED, None if changed else "already in sync"


def handle_transfer_reversed(ctx: EventContext, transfer: dict[str, Any]) -> Outcome:
    """Return a reversed transfer's amount to the seller's balance and tell them (once)."""
    if not _is_ours(transfer.get("metadata"), ctx.app_env):
        return StripeEventStatus.IGNORED, "not ours"
    snapshot = _gateway(ctx).retrieve_transfer(str(transfer["id"]))
    applied = transfers.apply_reversal(ctx.session, snapshot, now=ctx.now)
    return StripeEventStatus.PROCESSED, None if applied else "already reversed or unknown"


HANDLERS: dict[str, Callable[[EventContext, dict[str, Any]], Outcome]] = {
    "account.updated": handle_account_updated,
    "transfer.reversed": handle_transfer_reversed,
}


def _gateway(ctx: EventContext) -> ConnectGateway:
    if ctx.connect is None:
        raise RuntimeError("a Connect event needs the Connect gateway in its EventContext")
    return ctx.connect


def _is_ours(metadata: object, app_env: str) -> bool:
    return isinstance(metadata, dict) and metadata.get("app") == APP_TAG and metadata.get("env") == app_env

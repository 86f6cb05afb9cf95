"""The platform fee and the settlement of a call: integer cents, so refund + fee + net is always
exactly the gross, none of them negative."""

from __future__ import annotations

from dataclasses import dataclass

BPS_DENOMINATOR = 10_000


def split_fee(gross_cents: int, fee_bps: int) -> tuple[int, int]:
    """Split ``gross_cents`` into ``(fee, net)`` for a fee of ``fee_bps`` basis points.

    The fee is ``gross * bps / 10000`` rounded half up (0.5 cent goes to the platform), computed
    in integers so no float ever touches money; the net is what is left, so the two always sum
    to the gross.
    """
    if gross_cents < 0:
        raise ValueError("gross_cents must not be negative")
    if not 0 <= fee_bps <= BPS_DENOMINATOR:
        raise ValueError("fee_bps must be between 0 and 10000")
    fee = (gross_cents * fee_bps + BPS_DENOMINATOR // 2) // BPS_DENOMINATOR
    return fee, gross_cents - fee


@dataclass(frozen=True)
class Split:
    """Where a call's gross goes: back to the buyer, to the platform, to the seller. The three are
    integer cents, never negative, and always add up to the gross."""

    refund_cents: int
    fee_cents: int
    net_cents: int

    @property
    def kept_cents(self) -> int:
        """What the buyer pays in the end: the gross less the refund."""
        return self.fee_cents + self.net_cents


def keep_all(gross_cents: int, fee_cents: int) -> Split:
    """The call happened (or the buyer did not show up): the buyer pays it all."""
    _check(gross_cents, fee_cents)
    return Split(0, fee_cents, gross_cents - fee_cents)


def refund_all(gross_cents: int) -> Split:
    """The call did not happen for a reason that is not the buyer's: all back, no fee."""
    if gross_cents < 0:
        raise ValueError("gross_cents must not be negative")
    return Split(gross_cents, 0, 0)


def early_end_split(
    gross_cents: int, fee_cents: int, *, connected_seconds: int, duration_seconds: int, minimum_seconds: int
) -> Split:
    """The seller ended the call early: the buyer keeps paying only for the connected seconds.

    Below ``minimum_seconds`` of connected time everything goes back to the buyer. Otherwise the
    kept part is ``gross * connected / duration`` rounded DOWN (the odd cent goes to the buyer),
    the refund is the rest, and the platform's fee on the kept part is the call's own fee scaled
    to it (rounded half up, as the fee itself is), so a call kept whole keeps exactly its fee.
    """
    _check(gross_cents, fee_cents)
    if duration_seconds <= 0:
        raise ValueError("duration_seconds must be positive")
    connected = min(max(connected_seconds, 0), duration_seconds)
    if connected < minimum_seconds or gross_cents == 0:
        return refund_all(gross_cents)
    kept = gross_cents * connected // duration_seconds
    fee = min((fee_cents * kept * 2 + gross_cents) // (2 * gross_cents), kept)
    return Split(gross_cents - kept, fee, kept - fee)


def reversal_share(earned_cents: int, kept_cents: int, refund_cents: int) -> int:
    """The seller's part of ``refund_cents`` given back out of a payment of ``kept_cents`` from
    which they earned ``earned_cents``: their share of it, rounded half up, never more than they
    earned. The platform gives back its fee on the same part (the rest of the refund)."""
    if kept_cents <= 0 or earned_cents <= 0 or refund_cents <= 0:
        return 0
    refund = min(refund_cents, kept_cents)
    return min((earned_cents * refund * 2 + kept_cents) // (2 * kept_cents), earned_cents)


def _check(gross_cents: int, fee_cents: int) -> None:
    if gross_cents < 0:
        raise ValueError("gross_cents must not be negative")
    if not 0 <= fee_cents <= gross_cents:
        raise ValueError("fee_cents must be between 0 and the gross")

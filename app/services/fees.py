"""The platform fee: integer cents, rounded half up, so fee + net is always exactly the gross."""

from __future__ import annotations

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

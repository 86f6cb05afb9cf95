"""The one way ChatLink writes a time on the wire and an amount of money for people.

Times in the JSON API (and in anything a machine reads back) are ISO 8601 in UTC ending in ``Z``;
people read them with their zone said: in a named zone (``format_when``), or in UTC (``format_utc``)
until their own browser puts it in theirs. Money is
integer minor units everywhere in the code; people see it through ``format_money``, on pages, in
emails and in CSV alike, with the currency's own number of decimals. The call's length has one
phrase too (``call_length``).
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime

# ISO 4217 currencies without a minor unit: 2500 JPY is ¥2,500, not ¥25.00. (Stripe's list of
# zero-decimal currencies.)
ZERO_DECIMAL = frozenset(
    ("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf")
)
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "cad": "CA$", "aud": "A$", "nzd": "NZ$"}
MINUS = "\u2212"  # a real minus sign, the width of a digit


def iso(value: datetime | None) -> str | None:
    """``2026-12-07T20:30:00Z``: ISO 8601 in UTC with a ``Z``; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_when(value: datetime, time_zone: str) -> str:
    """An instant as a person in ``time_zone`` reads it: ``Tuesday 8 December 2026, 15:00 (Europe/Paris)``.
    The zone's name, not an abbreviation: CST is three different zones."""
    return f"{format_local(value, time_zone)} ({time_zone})"


def format_local(value: datetime, time_zone: str) -> str:
    """``Tuesday 8 December 2026, 15:00``: the wall-clock time in ``time_zone``, without its name."""
    local = value.astimezone(zoneinfo.ZoneInfo(time_zone))
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M}"


def currency_exponent(currency: str) -> int:
    """How many decimals the currency has: 0 for JPY and the other zero-decimal ones, else 2."""
    return 0 if currency.lower() in ZERO_DECIMAL else 2


def format_money(cents: int, currency: str, *, signed: bool = False) -> str:
    """``2500, "usd"`` → ``$25.00``; ``2500, "jpy"`` → ``¥2,500``; ``-150, "eur"`` → ``MINUS + "€1.50"``;
    a currency without a symbol here reads ``25.00 SEK``. ``signed`` marks a credit with ``+``
    (a ledger row: ``+$8.00``)."""
    exponent = currency_exponent(currency)
    major, minor = divmod(abs(int(cents)), 10**exponent)
    amount = f"{major:,}.{minor:0{exponent}d}" if exponent else f"{major:,}"
    symbol = _SYMBOLS.get(currency.lower())
    text = f"{symbol}{amount}" if symbol else f"{amount} {currency.upper()}"
    sign = MINUS if cents < 0 else ("+" if signed and cents > 0 else "")
    return sign + text


def format_utc(value: datetime) -> str:
    """``8 Dec 2026, 15:00 UTC``: a time for people who may be anywhere, with its zone said. Pages
    show it inside ``<time datetime>`` until the viewer's browser puts it in their own zone
    (``static/js/times.js``); emails keep it."""
    utc = value.astimezone(UTC)
    return f"{utc.day} {utc:%b %Y, %H:%M} UTC"


def call_length(seconds: int) -> str:
    """The call's length as every page, email and the checkout say it, from CALL_DURATION_SECONDS:
    ``300`` → ``5-minute`` (as in "a 5-minute video call"); ``90`` → ``90-second``."""
    return f"{seconds // 60}-minute" if seconds % 60 == 0 else f"{seconds}-second"

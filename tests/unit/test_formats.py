"""One spelling for a time on the wire and one for an amount of money, everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.formats import MINUS, currency_exponent, format_money, iso


class TestMoney:
    @pytest.mark.parametrize(
        ("cents", "currency", "text"),
        [
            (1000, "usd", "$10.00"),
            (1050, "usd", "$10.50"),
            (100000, "eur", "€1,000.00"),
            (5, "usd", "$0.05"),
            (0, "usd", "$0.00"),
            (1500, "jpy", "¥1,500"),  # zero-decimal: 1500 is ¥1,500, not ¥15.00
            (2500, "krw", "2,500 KRW"),
            (1999, "sek", "19.99 SEK"),
            (-150, "gbp", MINUS + "£1.50"),
        ],
    )
    def test_format_money(self, cents: int, currency: str, text: str) -> None:
        assert format_money(cents, currency) == text

    def test_a_signed_amount_marks_credits_and_debits(self) -> None:
        assert format_money(800, "usd", signed=True) == "+$8.00"
        assert format_money(-800, "usd", signed=True) == MINUS + "$8.00"
        assert format_money(0, "usd", signed=True) == "$0.00"

    def test_exponents(self) -> None:
        assert [currency_exponent(code) for code in ("usd", "JPY", "xof", "eur")] == [2, 0, 0, 2]


class TestTimes:
    def test_utc_with_a_z(self) -> None:
        moment = datetime(2026, 12, 7, 20, 30, 5, tzinfo=UTC)
        assert iso(moment) == "2026-12-07T20:30:05Z"

    def test_other_offsets_are_converted(self) -> None:
        paris = timezone(timedelta(hours=1))
        assert iso(datetime(2026, 12, 7, 21, 30, tzinfo=paris)) == "2026-12-07T20:30:00Z"

    def test_none_stays_none(self) -> None:
        assert iso(None) is None


def test_call_length_is_one_phrase_from_the_setting() -> None:
    from app.formats import call_length

    assert call_length(300) == "5-minute"
    assert call_length(60) == "1-minute"
    assert call_length(90) == "90-second"
    assert call_length(8) == "8-second"


def test_a_time_for_people_says_its_zone() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from app.formats import format_utc

    assert format_utc(datetime(2026, 12, 8, 15, 4, tzinfo=UTC)) == "8 Dec 2026, 15:04 UTC"
    paris = timezone(timedelta(hours=1))
    assert format_utc(datetime(2026, 12, 8, 16, 4, tzinfo=paris)) == "8 Dec 2026, 15:04 UTC"

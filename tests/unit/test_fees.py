"""The platform fee split: integer cents, rounded half up, always summing to the gross."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.fees import split_fee

gross_amounts = st.integers(min_value=0, max_value=10_000_000)
fee_rates = st.integers(min_value=0, max_value=10_000)


@given(gross=gross_amounts, bps=fee_rates)
def test_fee_and_net_sum_to_the_gross_within_bounds(gross: int, bps: int) -> None:
    fee, net = split_fee(gross, bps)
    assert fee + net == gross
    assert 0 <= fee <= gross
    assert 0 <= net <= gross


@given(gross=gross_amounts, bps=fee_rates)
def test_the_fee_is_the_exact_share_rounded_half_up(gross: int, bps: int) -> None:
    fee, _ = split_fee(gross, bps)
    exact = Fraction(gross * bps, 10_000)
    # Within half a cent of the exact share, and a tie goes up.
    assert abs(fee - exact) <= Fraction(1, 2)
    if exact - int(exact) == Fraction(1, 2):
        assert fee == int(exact) + 1


@given(gross=gross_amounts, bps=st.integers(min_value=0, max_value=9_999))
def test_a_higher_rate_never_takes_less(gross: int, bps: int) -> None:
    assert split_fee(gross, bps)[0] <= split_fee(gross, bps + 1)[0]


@pytest.mark.parametrize(
    ("gross", "bps", "expected"),
    [
        (1000, 2000, (200, 800)),
        (1, 5000, (1, 0)),  # half a cent rounds up
        (3, 5000, (2, 1)),  # 1.5 -> 2
        (1, 4999, (0, 1)),  # just under half rounds down
        (999, 2000, (200, 799)),  # 199.8 -> 200
        (1000, 0, (0, 1000)),
        (1000, 10000, (1000, 0)),
        (0, 2000, (0, 0)),
    ],
)
def test_known_splits(gross: int, bps: int, expected: tuple[int, int]) -> None:
    assert split_fee(gross, bps) == expected


@pytest.mark.parametrize(("gross", "bps"), [(-1, 2000), (100, -1), (100, 10_001)])
def test_nonsense_is_refused(gross: int, bps: int) -> None:
    with pytest.raises(ValueError):
        split_fee(gross, bps)

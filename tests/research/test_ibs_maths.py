"""IBS and position sizing: the pure maths of ibs_reversion, checked with Hypothesis."""

from __future__ import annotations

import math

from hypothesis import assume, given
from hypothesis import strategies as st

from ats.strategies.ibs_reversion import entry_quantity, ibs

prices = st.floats(min_value=0.01, max_value=100_000, allow_nan=False, allow_infinity=False)


@st.composite
def bars(draw):
    """(high, low, close) with low <= close <= high."""
    low = draw(prices)
    high = draw(st.floats(min_value=low, max_value=low * 3, allow_nan=False))
    close = draw(st.floats(min_value=low, max_value=high, allow_nan=False))
    return high, low, close


@given(bars())
def test_ibs_is_between_0_and_1(bar):
    high, low, close = bar
    value = ibs(high, low, close)
    assume(high > low)
    assert value is not None
    assert 0.0 <= value <= 1.0


@given(prices, prices)
def test_ibs_of_a_flat_bar_is_no_signal(price, close):
    assert ibs(price, price, close) is None


@given(bars())
def test_ibs_is_0_at_the_low_and_1_at_the_high(bar):
    high, low, _ = bar
    assume(high > low)
    assert ibs(high, low, low) == 0.0
    assert ibs(high, low, high) == 1.0


@given(bars())
def test_ibs_matches_its_definition(bar):
    high, low, close = bar
    assume(high > low)
    assert math.isclose(ibs(high, low, close), (close - low) / (high - low), abs_tol=1e-12)


def test_ibs_examples():
    assert ibs(110.0, 100.0, 102.0) == 0.2
    assert ibs(10.0, 10.0, 10.0) is None


@given(st.floats(min_value=1, max_value=1e7, allow_nan=False), prices)
def test_entry_quantity_is_the_floor_of_notional_over_close(notional, close):
    quantity = entry_quantity(notional, close)
    assert isinstance(quantity, int)
    assert quantity * close <= notional * (1 + 1e-12)
    assert (quantity + 1) * close > notional * (1 - 1e-12)


@given(st.floats(min_value=0.01, max_value=1e4, allow_nan=False))
def test_entry_quantity_is_zero_when_one_share_costs_more_than_the_notional(notional):
    assert entry_quantity(notional, notional * 1.0001 + 0.01) == 0


def test_entry_quantity_examples():
    assert entry_quantity(4000.0, 511.23) == 7
    assert entry_quantity(4000.0, 400.0) == 10
    assert entry_quantity(4000.0, 4000.01) == 0
    assert entry_quantity(4000.0, 0.0) == 0

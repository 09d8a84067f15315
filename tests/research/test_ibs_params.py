"""JSON params, instrument ids and bar specs: each refusal is one clear InputError line."""

from __future__ import annotations

import pytest

from ats.core.errors import InputError, UnknownStrategyError
from ats.core.params import allowed_params, parse_bar_type, parse_instrument_id, parse_params


def test_params_build_the_frozen_config_with_defaults():
    config = parse_params("ibs_reversion", '{"buy_threshold": 0.15}', "QQQ.NASDAQ")
    assert config.buy_threshold == 0.15
    assert config.sell_threshold == 0.8
    assert config.notional == 4000.0
    assert config.max_hold_bars is None
    assert str(config.bar_type) == "QQQ.NASDAQ-1-DAY-LAST-EXTERNAL"
    assert [str(i) for i in config.external_order_claims] == ["QQQ.NASDAQ"]


def test_params_accept_a_dict_and_an_integer_for_a_float():
    config = parse_params("ibs_reversion", {"notional": 3000, "max_hold_bars": 5}, "QQQ.NASDAQ")
    assert config.notional == 3000.0
    assert config.max_hold_bars == 5


def test_empty_params_are_the_defaults():
    assert parse_params("ibs_reversion", "", "QQQ.NASDAQ").buy_threshold == 0.2
    assert parse_params("ibs_reversion", None, "QQQ.NASDAQ").buy_threshold == 0.2


def test_malformed_json_is_refused():
    with pytest.raises(InputError, match=r"params are not valid JSON: .* line 1 column 2"):
        parse_params("ibs_reversion", "{buy_threshold: 0.1}", "QQQ.NASDAQ")


def test_a_json_array_is_refused():
    with pytest.raises(InputError, match="params must be a JSON object"):
        parse_params("ibs_reversion", "[0.1]", "QQQ.NASDAQ")


def test_unknown_key_is_refused_listing_the_allowed_ones():
    with pytest.raises(InputError) as info:
        parse_params("ibs_reversion", '{"buy_treshold": 0.1}', "QQQ.NASDAQ")
    message = str(info.value)
    assert "unknown parameter 'buy_treshold'" in message
    assert "did you mean buy_threshold?" in message
    assert "allowed: buy_threshold, max_hold_bars, notional, sell_threshold" in message


def test_runner_fields_are_not_params():
    with pytest.raises(InputError, match="unknown parameter 'instrument_id'"):
        parse_params("ibs_reversion", '{"instrument_id": "SPY.ARCA"}', "QQQ.NASDAQ")


@pytest.mark.parametrize(("params", "message"), [
    ('{"buy_threshold": "0.1"}', 'parameter buy_threshold for ibs_reversion must be a number, got "0.1"'),
    ('{"notional": true}', "parameter notional for ibs_reversion must be a number, got true"),
    ('{"max_hold_bars": 2.5}', "parameter max_hold_bars for ibs_reversion must be an integer or null, got 2.5"),
])
def test_wrong_type_is_refused(params, message):
    with pytest.raises(InputError) as info:
        parse_params("ibs_reversion", params, "QQQ.NASDAQ")
    assert str(info.value) == message


@pytest.mark.parametrize(("params", "message"), [
    ('{"buy_threshold": 1.5}', "buy_threshold must be between 0 and 1 (got 1.5)"),
    ('{"notional": 0}', "notional must be greater than 0 USD"),
    ('{"max_hold_bars": 0}', "max_hold_bars must be at least 1 or null"),
])
def test_out_of_range_values_are_refused(params, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params("ibs_reversion", params, "QQQ.NASDAQ")


def test_unknown_strategy_is_refused():
    with pytest.raises(UnknownStrategyError, match="known strategies: ibs_reversion"):
        parse_params("nope", "{}", "QQQ.NASDAQ")


def test_allowed_params_lists_the_config_fields():
    assert allowed_params("ibs_reversion") == ["buy_threshold", "max_hold_bars", "notional", "sell_threshold"]


@pytest.mark.parametrize("text", ["QQQ", "QQQ.", ".NASDAQ", "QQQ NASDAQ", ""])
def test_malformed_instrument_id_is_refused(text):
    with pytest.raises(InputError, match="expected SYMBOL.VENUE"):
        parse_instrument_id(text)


def test_instrument_id_is_parsed():
    iid = parse_instrument_id("QQQ.NASDAQ")
    assert (iid.symbol.value, iid.venue.value) == ("QQQ", "NASDAQ")


@pytest.mark.parametrize(("spec", "message"), [
    ("1-DAYS-LAST", "unknown aggregation 'DAYS'"),
    ("1-DAY-CLOSE", "unknown price type 'CLOSE'"),
    ("DAY", "expected STEP-AGGREGATION-PRICE_TYPE"),
])
def test_malformed_bar_spec_is_refused(spec, message):
    with pytest.raises(InputError, match=message):
        parse_bar_type("QQQ.NASDAQ", spec)


def test_default_bar_type():
    assert str(parse_bar_type("QQQ.NASDAQ")) == "QQQ.NASDAQ-1-DAY-LAST-EXTERNAL"


@pytest.mark.parametrize(("params", "expected"), [
    ('{"buy_threshold": NaN}', "params for ibs_reversion: NaN is not a number a strategy can use: give a finite number for buy_threshold"),
    ({"notional": float("inf")}, "params for ibs_reversion: Infinity is not a number a strategy can use: give a finite number for notional"),
    ('{"notional": 1e999}', "Infinity is not a number a strategy can use: give a finite number for notional"),
])
def test_nan_and_infinity_are_refused_naming_the_parameter(params, expected):
    with pytest.raises(InputError) as excinfo:
        parse_params("ibs_reversion", params, "QQQ.NASDAQ")

    assert expected in str(excinfo.value)
    assert "invalid character" not in str(excinfo.value)


def test_nan_inside_a_list_parameter_names_its_position():
    with pytest.raises(InputError, match=r"NaN is not a number a strategy can use: give a finite number for quantities\[1\]"):
        parse_params("order_check", '{"quantities": [1, NaN]}', "QQQ.NASDAQ")

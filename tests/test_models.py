"""Every documented response example decodes, quirks included; wrong shapes fail clearly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from binance_pm import (
    AccountStatus,
    AccountType,
    DecodeError,
    PMAccount,
    PMBalance,
    PMProAccount,
)
from binance_pm._endpoints import ENDPOINTS

from .documented import fixture_bytes


def decode(endpoint: str, fixture: str) -> Any:
    return ENDPOINTS[endpoint].decode(fixture_bytes(fixture))


def test_papi_balance_list_example_decodes_with_empty_pnl_as_none() -> None:
    (balance,) = decode("pm_balance", "papi_balance_list.json")

    assert balance == PMBalance(
        asset="USDT",
        total_wallet_balance=Decimal("122607.35137903"),
        cross_margin_asset=Decimal("92.27530794"),
        cross_margin_borrowed=Decimal("10.00000000"),
        cross_margin_free=Decimal("100.00000000"),
        cross_margin_interest=Decimal("0.72469206"),
        cross_margin_locked=Decimal("3.00000000"),
        um_wallet_balance=Decimal("0.00000000"),
        um_unrealized_pnl=Decimal("23.72469206"),
        cm_wallet_balance=Decimal("23.72469206"),
        cm_unrealized_pnl=None,
        update_time=1617939110373,
        negative_balance=Decimal("0"),
    )


def test_papi_balance_single_object_example_has_no_cross_margin_asset() -> None:
    balance = decode("pm_balance", "papi_balance_one.json")

    assert isinstance(balance, PMBalance)
    assert balance.cross_margin_asset is None
    assert balance.cross_margin_free == Decimal("100.00000000")
    assert balance.cm_unrealized_pnl is None


@pytest.mark.parametrize(
    "fixture", ["sapi_portfolio_balance.json", "sapi_portfolio_balance_zh.json"]
)
def test_sapi_portfolio_balance_examples_decode_with_option_fields(fixture: str) -> None:
    (balance,) = decode("pm_pro_balance", fixture)

    assert balance.option_wallet_balance == Decimal("0")
    assert balance.option_equity == Decimal("0")
    assert balance.total_wallet_balance in (Decimal("100"), Decimal("122607.35137903"))


def test_sapi_v1_account_example_decodes_thousands_separator() -> None:
    info = decode("pm_pro_account", "sapi_v1_portfolio_account.json")

    assert info == PMProAccount(
        uni_mmr=Decimal("5167.92171923"),
        account_equity=Decimal("122607.35137903"),
        actual_equity=Decimal("142607.35137903"),
        account_maint_margin=Decimal("23.72469206"),
        account_initial_margin=Decimal("47.44938412"),
        total_available_balance=Decimal("122559.90199491"),
        account_status=AccountStatus.NORMAL,
        account_type=AccountType.PM_1,
    )


def test_sapi_v2_span_example_decodes_risk_units() -> None:
    span = decode("pm_pro_span_account", "sapi_v2_portfolio_account.json")

    assert span.uni_mmr == Decimal("5167.92171923")
    assert [(u.asset, u.uni_maintain_usd) for u in span.risk_unit_mm_list] == [
        ("BTC", Decimal("23.72469206"))
    ]
    assert span.margin_mm == Decimal("0")
    assert span.account_type is AccountType.PM_3


def test_papi_account_example_decodes_with_empty_totals_as_none() -> None:
    info = decode("pm_account", "papi_account.json")
    assert isinstance(info, PMAccount)
    assert info.uni_mmr == Decimal("5167.92171923")
    assert info.actual_equity == Decimal("122607.35137903")
    assert info.account_status is AccountStatus.NORMAL
    assert info.virtual_max_withdraw_amount == Decimal("1627523.32459208")
    assert info.total_available_balance is None
    assert info.total_margin_open_loss is None
    assert info.update_time == 1657707212154


def test_fapi_pm_account_info_example_decodes() -> None:
    info = decode("classic_pm_account", "fapi_pm_account_info.json")

    assert info.asset == "BTC"
    assert info.max_withdraw_amount == Decimal("27.43689636")
    assert info.max_withdraw_amount_usd == Decimal("1627523.32459208")


def test_amounts_are_decimal_never_float() -> None:
    info = decode("pm_pro_account", "sapi_v1_portfolio_account.json")
    values = msgspec.structs.asdict(info)

    assert not any(isinstance(v, float) for v in values.values())


def account_json(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "uniMMR": "1.5",
        "accountEquity": "10",
        "actualEquity": "10",
        "accountMaintMargin": "1",
        "accountStatus": "NORMAL",
        "accountType": "PM_1",
    }
    body.update(overrides)
    return msgspec.json.encode(body)


def test_unknown_enum_values_still_decode_and_keep_their_text() -> None:
    info = ENDPOINTS["pm_pro_account"].decode(
        account_json(accountStatus="PARTIAL_LIQUIDATION", accountType="PM_9")
    )

    assert isinstance(info.account_status, AccountStatus)
    assert info.account_status == "PARTIAL_LIQUIDATION"
    assert info.account_type.value == "PM_9"


def test_fields_the_exchange_adds_are_ignored() -> None:
    info = ENDPOINTS["pm_pro_account"].decode(account_json(brandNewField={"x": 1}))

    assert info.uni_mmr == Decimal("1.5")


def test_json_numbers_decode_to_exact_decimals() -> None:
    info = ENDPOINTS["pm_pro_account"].decode(
        b'{"uniMMR": 0.1, "accountEquity": "10", '
        b'"actualEquity": "10", "accountMaintMargin": "1", "accountStatus": "NORMAL", '
        b'"accountType": "PM_1"}'
    )

    assert info.uni_mmr == Decimal("0.1")


def test_results_are_frozen() -> None:
    info = ENDPOINTS["pm_pro_account"].decode(account_json())

    with pytest.raises(AttributeError):
        info.uni_mmr = Decimal(0)


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (account_json(uniMMR="lots"), "$.uniMMR", "decimal"),
        (account_json(uniMMR="1,2"), "$.uniMMR", "decimal"),
        (account_json(accountStatus=7), "$.accountStatus", "Expected `str`"),
        (b'{"uniMMR": "1"}', None, "missing required field"),
        (b"[1, 2]", None, "Expected `object`, got `array`"),
        (b'{"uniMMR": "1.5", "accountEq', None, "truncated"),
        (b"<html>502</html>", None, "malformed"),
    ],
)
def test_wrong_shapes_raise_decode_error_naming_endpoint_and_field(
    body: bytes, path: str | None, words: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        ENDPOINTS["pm_pro_account"].decode(body)

    assert caught.value.endpoint == "GET /sapi/v1/portfolio/account"
    assert caught.value.path == path
    assert words.lower() in str(caught.value).lower()
    assert "/sapi/v1/portfolio/account" in str(caught.value)


def test_decode_error_in_a_list_names_the_element() -> None:
    body = fixture_bytes("papi_balance_list.json").replace(
        b'"updateTime": 1617939110373', b'"updateTime": "x"'
    )

    with pytest.raises(DecodeError) as caught:
        ENDPOINTS["pm_balance"].decode(body)

    assert caught.value.path == "$[0].updateTime"


def test_empty_text_stays_text_and_empty_amounts_become_none_together() -> None:
    # An empty amount takes the quick way (as null); an empty asset name is text and stays "".
    body = (
        b'[{"asset":"","totalWalletBalance":"","crossMarginBorrowed":"0","crossMarginFree":"1",'
        b'"crossMarginInterest":"0","crossMarginLocked":"0","umWalletBalance":"1",'
        b'"umUnrealizedPNL":"","cmWalletBalance":"2","cmUnrealizedPNL":"3,000.5",'
        b'"updateTime":1}]'
    )
    (balance,) = ENDPOINTS["pm_balance"].decode(body)
    assert balance.asset == ""
    assert balance.total_wallet_balance is None
    assert balance.um_unrealized_pnl is None
    assert balance.cm_unrealized_pnl == Decimal("3000.5")

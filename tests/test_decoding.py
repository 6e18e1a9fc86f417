"""Decoding never raises anything but DecodeError, reads the usual untidiness in one pass, and
refuses amounts that are not finite decimals."""

from __future__ import annotations

import contextlib
import json
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import binance_pm
from binance_pm import DecodeError, IPBannedError, PMProAccount
from binance_pm._decoding import MAX_EXPONENT
from binance_pm._endpoints import ACCOUNT_ENDPOINTS, API_TIME, PM_BALANCE, PM_PRO_ACCOUNT
from binance_pm._events import decode_event

from .documented import DOCUMENTED, fixture_bytes

BODIES = {path: fixture_bytes(name) for path, name in DOCUMENTED.items()}
ENDPOINTS = [*ACCOUNT_ENDPOINTS.values(), API_TIME]
ACCOUNT = json.loads(BODIES["/sapi/v1/portfolio/account"])


def account_body(**changes: Any) -> bytes:
    return json.dumps({**ACCOUNT, **changes}).encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=st.binary(max_size=400), index=st.integers(0, len(ENDPOINTS) - 1))
def test_any_bytes_decode_or_raise_decode_error(body: bytes, index: int) -> None:
    with contextlib.suppress(DecodeError):
        ENDPOINTS[index].decode(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    data=st.data(),
    path=st.sampled_from(sorted(BODIES)),
)
def test_mutated_recorded_answers_decode_or_raise_decode_error(
    data: st.DataObject, path: str
) -> None:
    body = bytearray(BODIES[path])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        if action == "cut":
            del body[at:]
            if not body:
                break
        elif action == "flip":
            body[at] = data.draw(st.integers(0, 255))
        else:
            body[at:at] = data.draw(st.sampled_from([b'""', b"[", b"\xff", b'"NaN"', b",", b"{"]))
    endpoint = next(e for e in ACCOUNT_ENDPOINTS.values() if e.path == path)
    with contextlib.suppress(DecodeError):
        endpoint.decode(bytes(body))


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"uniMMR": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"uniMMR": "", "accountEquity": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=["array", "in a field", "in a field of an untidy body"],
)
def test_json_nested_thousands_deep_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        PM_PRO_ACCOUNT.decode(body)


def test_invalid_utf8_in_a_text_field_is_a_decode_error() -> None:
    body = BODIES["/papi/v1/balance"].replace(b'"USDT"', b'"US\xffDT"', 1)
    with pytest.raises(DecodeError):
        PM_BALANCE.decode(body)


def test_a_truncated_answer_with_an_empty_amount_is_a_decode_error() -> None:
    body = BODIES["/papi/v1/balance"]
    assert b'""' in body
    with pytest.raises(DecodeError):
        PM_BALANCE.decode(body[: len(body) // 2])


@pytest.mark.parametrize(
    "amount", ["NaN", "sNaN", "-nan", "Infinity", "-inf", "1e999999999", f"1e{MAX_EXPONENT + 5}"]
)
def test_an_amount_that_is_not_a_finite_decimal_is_a_decode_error_naming_the_field(
    amount: str,
) -> None:
    with pytest.raises(DecodeError) as caught:
        PM_PRO_ACCOUNT.decode(account_body(uniMMR=amount))
    assert caught.value.path == "$.uniMMR"


def test_exponents_within_reason_and_assets_named_like_inf_still_decode() -> None:
    info = PM_PRO_ACCOUNT.decode(account_body(uniMMR="1.5E+3"))
    assert info.uni_mmr == Decimal("1500")
    body = BODIES["/papi/v1/balance"].replace(b'"USDT"', b'"INF"', 1)
    balances = PM_BALANCE.decode(body)
    assert isinstance(balances, list)
    assert any(b.asset == "INF" for b in balances)


def test_empty_and_grouped_amounts_together_decode_exactly() -> None:
    info = PM_PRO_ACCOUNT.decode(
        account_body(totalAvailableBalance="122,559.90199491", accountEquity="")
    )
    assert info.total_available_balance == Decimal("122559.90199491")
    assert info.account_equity is None


def test_an_empty_text_field_still_decodes() -> None:
    body = BODIES["/papi/v1/balance"].replace(b'"USDT"', b'""', 1)
    balances = PM_BALANCE.decode(body)
    assert isinstance(balances, list)
    assert any(b.asset == "" for b in balances)


def test_fields_documented_as_ignored_may_be_absent() -> None:
    trimmed = {
        k: v
        for k, v in ACCOUNT.items()
        if k not in ("accountInitialMargin", "totalAvailableBalance")
    }
    info = PM_PRO_ACCOUNT.decode(json.dumps(trimmed).encode())
    assert info.account_initial_margin is None
    assert info.total_available_balance is None
    without_equity = {k: v for k, v in ACCOUNT.items() if k != "accountEquity"}
    with pytest.raises(DecodeError, match="accountEquity"):
        PM_PRO_ACCOUNT.decode(json.dumps(without_equity).encode())


@pytest.mark.parametrize("digits", ["9999999999999999", "99999999999999999999"])
def test_banned_until_never_raises(digits: str) -> None:
    error = IPBannedError(418, -1003, f"IP banned until {digits}.", endpoint="GET /x")
    assert error.banned_until is None


ERRORS = sorted(
    name
    for name in binance_pm.__all__
    if isinstance(getattr(binance_pm, name), type)
    and issubclass(getattr(binance_pm, name), binance_pm.BinancePMError)
)


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_class_survives_pickling(name: str) -> None:
    cls = getattr(binance_pm, name)
    error: binance_pm.BinancePMError
    if issubclass(cls, binance_pm.APIError):
        error = cls(429, -1003, "msg", endpoint="GET /x", api_key="ab…cd", retry_after=1.5)
    elif cls is DecodeError:
        error = cls("bad", endpoint="GET /x", path="$.a")
    elif issubclass(cls, binance_pm.GovernorTimeout):
        error = cls("late", endpoint="GET /x", api_key="ab…cd", retry_after=2.0)
    elif cls is binance_pm.TransportError:
        error = cls("reset", endpoint="GET /x", api_key="ab…cd")
    else:
        error = cls("closed")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_pm_pro_account_type_is_exported() -> None:
    assert PMProAccount is binance_pm.PMProAccount


@pytest.mark.parametrize(
    "message",
    [
        b'{"e":"X","a":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"e":"RISK_LEVEL_CHANGE","s":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"e":"X","a":"\xff"}',
        b'{"e":"X","a":1' + b"0" * 5000 + b"}",
    ],
    ids=["nested 1000 deep", "typed event nested", "not UTF-8", "a 5000-digit number"],
)
def test_a_pathological_stream_message_is_a_decode_error(message: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_event(message)


def test_answers_in_any_order_of_tidiness_decode_alike_through_one_decoder() -> None:
    """An endpoint's decoder mends the next answer early as the last one had to be (``""``
    amounts, grouped digits); whatever comes next (tidy, ``""`` again, ``""`` where text is
    due, a bad amount, grouped digits with or without ``""``), each decodes exactly as it does
    through a fresh decoder, or fails alike."""
    from binance_pm._decoding import ResponseDecoder
    from binance_pm._models import PMBalance

    entry = json.loads(fixture_bytes("papi_balance_list.json"))[0]
    bodies = {
        "tidy": {**entry, "cmUnrealizedPNL": "1.5"},
        "nulls": {**entry, "cmUnrealizedPNL": "", "umWalletBalance": ""},
        "text empty": {**entry, "asset": "", "cmUnrealizedPNL": ""},
        "grouped": {**entry, "cmUnrealizedPNL": "", "totalWalletBalance": "122,607.35"},
        "grouped only": {**entry, "totalWalletBalance": "1,122,607.35"},
        "nan": {**entry, "cmUnrealizedPNL": "", "crossMarginFree": "NaN"},
    }
    order = ["nulls", "tidy", "nulls", "text empty", "nulls", "grouped", "nulls", "nan", "nulls"]
    order += ["grouped", "grouped", "grouped only", "grouped only", "tidy", "grouped only"]
    order += ["nulls", "grouped only", "text empty", "grouped", "nan", "grouped only", "tidy"]
    shared: ResponseDecoder[list[PMBalance]]
    shared = ResponseDecoder(list[PMBalance], endpoint="GET /papi/v1/balance")

    def outcome(decoder: ResponseDecoder[list[PMBalance]], body: bytes) -> object:
        try:
            return decoder.decode(body)
        except DecodeError as exc:
            return ("DecodeError", exc.path)

    for name in order:
        body = json.dumps([bodies[name]]).encode()
        fresh: ResponseDecoder[list[PMBalance]]
        fresh = ResponseDecoder(list[PMBalance], endpoint="GET /papi/v1/balance")
        assert outcome(shared, body) == outcome(fresh, body), name
    assert outcome(shared, json.dumps([bodies["nan"]]).encode()) == (
        "DecodeError",
        "$[0].crossMarginFree",
    )

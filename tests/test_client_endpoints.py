"""The five endpoints end to end through httpx, with the exact request bytes checked."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from binance_pm import (
    AccountStatus,
    AccountType,
    AsyncClient,
    ClassicPMAccount,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
    Session,
)

from .conftest import TEST_BASE_URL, Account, MockExchange
from .documented import fixture_bytes


def signed_request(mocked: MockExchange) -> httpx.Request:
    """The one request of the test that was not a time request."""
    (request,) = [r for r in mocked.requests if not r.url.path.endswith("/time")]
    return request


def query_names(request: httpx.Request) -> list[str]:
    return [part.split(b"=", 1)[0].decode() for part in request.url.query.split(b"&")]


def assert_signed_correctly(request: httpx.Request, account: Account) -> None:
    payload, _, signature = request.url.query.rpartition(b"&signature=")
    assert request.headers["X-MBX-APIKEY"] == account.api_key
    assert account.verify(payload, signature.decode())
    if account.key_type == "HMAC":
        assert len(signature) == 64
        assert signature == signature.lower()
    else:
        # base64 is percent-encoded, so no raw '+', '/' or '=' reaches the wire.
        assert not set(signature.decode()) & set("+/=")


async def test_pm_balance_sends_signed_get_to_papi_and_decodes_list(
    client: AsyncClient, mocked: MockExchange, account: Account
) -> None:
    balances = await client.pm_balance()

    request = signed_request(mocked)
    assert request.method == "GET"
    assert request.url.path == "/papi/v1/balance"
    assert query_names(request) == ["recvWindow", "timestamp", "signature"]
    assert_signed_correctly(request, account)
    assert isinstance(balances, list)
    assert balances[0].asset == "USDT"
    assert balances[0].cm_unrealized_pnl is None


async def test_pm_balance_with_asset_sends_asset_first_and_returns_one_balance(
    client: AsyncClient, mocked: MockExchange, account: Account
) -> None:
    mocked.push("/papi/v1/balance", (200, fixture_bytes("papi_balance_one.json"), {}))

    balance = await client.pm_balance(asset="usdt")

    request = signed_request(mocked)
    assert query_names(request) == ["asset", "recvWindow", "timestamp", "signature"]
    assert request.url.query.startswith(b"asset=USDT&recvWindow=5000&timestamp=")
    assert isinstance(balance, PMBalance)
    assert balance.cross_margin_asset is None
    assert balance.total_wallet_balance == Decimal("122607.35137903")


async def test_pm_pro_balance_sends_signed_get_to_sapi(
    client: AsyncClient, mocked: MockExchange, account: Account
) -> None:
    balances = await client.pm_pro_balance()

    request = signed_request(mocked)
    assert request.url.path == "/sapi/v1/portfolio/balance"
    assert_signed_correctly(request, account)
    assert isinstance(balances[0], PMProBalance)
    assert balances[0].option_equity == Decimal("0")


async def test_pm_pro_account_sends_signed_get_and_decodes_thousands_separator(
    client: AsyncClient, mocked: MockExchange, account: Account
) -> None:
    info = await client.pm_pro_account()

    request = signed_request(mocked)
    assert request.url.path == "/sapi/v1/portfolio/account"
    assert query_names(request) == ["recvWindow", "timestamp", "signature"]
    assert_signed_correctly(request, account)
    assert isinstance(info, PMProAccount)
    assert info.total_available_balance == Decimal("122559.90199491")
    assert info.account_type is AccountType.PM_1


async def test_pm_pro_span_account_sends_signed_get_to_sapi_v2(
    client: AsyncClient, mocked: MockExchange, account: Account
) -> None:
    span = await client.pm_pro_span_account()

    request = signed_request(mocked)
    assert request.url.path == "/sapi/v2/portfolio/account"
    assert_signed_correctly(request, account)
    assert isinstance(span, PMProSpanAccount)
    assert span.risk_unit_mm_list[0].uni_maintain_usd == Decimal("23.72469206")
    assert span.account_status is AccountStatus.NORMAL


async def test_classic_pm_account_sends_asset_to_fapi(
    client: AsyncClient, mocked: MockExchange, account: Account
) -> None:
    mx = await client.classic_pm_account(asset="BTC")

    request = signed_request(mocked)
    assert request.url.path == "/fapi/v1/pmAccountInfo"
    assert query_names(request) == ["asset", "recvWindow", "timestamp", "signature"]
    assert_signed_correctly(request, account)
    assert isinstance(mx, ClassicPMAccount)
    assert mx.max_withdraw_amount_usd == Decimal("1627523.32459208")


async def test_recv_window_per_call_overrides_the_session(
    client: AsyncClient, mocked: MockExchange
) -> None:
    await client.pm_pro_account(recv_window=60000)

    assert b"recvWindow=60000&timestamp=" in signed_request(mocked).url.query


async def test_timestamp_is_the_exchange_clock_not_the_local_one(
    client: AsyncClient, mocked: MockExchange
) -> None:
    mocked.skew_ms = 30_000  # the exchange runs 30 s ahead of this machine

    await client.pm_pro_account()

    sent = dict(p.split(b"=", 1) for p in signed_request(mocked).url.query.split(b"&"))
    assert abs(int(sent[b"timestamp"]) - (time.time() * 1000 + 30_000)) < 1_000


async def test_asset_is_required_and_checked_before_anything_is_sent(
    client: AsyncClient, mocked: MockExchange
) -> None:
    with pytest.raises(ValueError, match="asset"):
        await client.classic_pm_account(asset="  ")

    assert mocked.requests == []


async def test_standalone_client_owns_its_session_and_closes_it(
    mocked: MockExchange, accounts: dict[str, Account]
) -> None:
    account = accounts["HMAC"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(mocked)) as http:
        async with AsyncClient(
            account.api_key, **account.credentials(), base_url=TEST_BASE_URL, http=http
        ) as client:
            await client.pm_balance()
        assert client.session.closed
        assert not http.is_closed  # caller-owned: the session used it but did not close it


async def test_clients_of_one_session_share_one_clock_measurement(
    session: Session, mocked: MockExchange, accounts: dict[str, Account]
) -> None:
    clients = [session.client(a.api_key, **a.credentials()) for a in accounts.values()]

    for c in clients:
        await c.pm_pro_account()

    assert mocked.time_calls == session.clock.samples


def test_exactly_one_of_secret_and_private_key_is_required(accounts: dict[str, Account]) -> None:
    rsa = accounts["RSA"]
    with pytest.raises(ValueError, match="exactly one"):
        AsyncClient(HMAC_KEY := accounts["HMAC"].api_key)
    with pytest.raises(ValueError, match="exactly one"):
        AsyncClient(HMAC_KEY, secret="s", private_key=rsa.private_pem)


if TYPE_CHECKING:
    from typing_extensions import assert_type

    async def _pm_balance_overloads_are_typed(client: AsyncClient) -> None:
        # Checked by mypy (the suite's `mypy` step), never run.
        assert_type(await client.pm_balance(), list[PMBalance])
        assert_type(await client.pm_balance(asset="USDT"), PMBalance)
        assert_type(await client.pm_pro_balance(), list[PMProBalance])
        assert_type(await client.classic_pm_account(asset="BTC"), ClassicPMAccount)

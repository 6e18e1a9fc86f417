"""The client against the simulated exchange over real loopback sockets: every endpoint, every
key type, every error class."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from decimal import Decimal

import anyio
import pytest

import binance_pm._retry
from binance_pm import (
    AccountType,
    AsyncClient,
    AuthError,
    BadRequestError,
    ClassicPMAccount,
    DecodeError,
    IPBannedError,
    Limits,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
    RateLimitError,
    ServerError,
    Session,
    TimestampError,
    TransportError,
)
from binance_pm._endpoints import API_TIME, CLASSIC_PM_ACCOUNT
from binance_pm.testing import SimAccount, SimulatedExchange

from .conftest import Stack


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance_pm._retry, "BASE_DELAY", 0.001)
    monkeypatch.setattr(binance_pm._retry, "OVERLOAD_BASE_DELAY", 0.001)


pytestmark = pytest.mark.simulated(accounts=30, seed=11)


def pick(ex: SimulatedExchange, product: AccountType, key_type: str = "HMAC") -> SimAccount:
    return next(a for a in ex.accounts if a.account_type is product and a.key_type == key_type)


def client_for(session: Session, account: SimAccount) -> AsyncClient:
    return session.client(account.api_key, **account.credentials())


@pytest.mark.parametrize("key_type", ["HMAC", "ED25519", "RSA"])
async def test_every_endpoint_with_every_key_type(
    simulated: SimulatedExchange, key_type: str, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        pm = client_for(session, pick(simulated, AccountType.PM_2, key_type))
        pro = client_for(session, pick(simulated, AccountType.PM_1, key_type))
        span = client_for(session, pick(simulated, AccountType.PM_3, key_type))

        balances = await pm.pm_balance()
        usdt = await pm.pm_balance(asset="USDT")
        pro_balances = await pro.pm_pro_balance()
        pro_account = await pro.pm_pro_account()
        span_account = await span.pm_pro_span_account()
        span_v1 = await span.pm_pro_account()
        classic = await pro.classic_pm_account(asset="BTC")

    assert balances
    assert all(isinstance(b, PMBalance) for b in balances)
    assert isinstance(usdt, PMBalance)
    assert usdt.asset == "USDT"
    assert usdt.cross_margin_asset is None
    assert pro_balances
    assert all(isinstance(b, PMProBalance) for b in pro_balances)
    assert isinstance(pro_account, PMProAccount)
    assert pro_account.account_type is AccountType.PM_1
    assert isinstance(span_account, PMProSpanAccount)
    assert span_account.risk_unit_mm_list
    assert span_v1.account_type is AccountType.PM_3
    assert isinstance(classic, ClassicPMAccount)
    assert classic.asset == "BTC"
    assert isinstance(pro_account.uni_mmr, Decimal)
    assert pro_account.uni_mmr > 0
    assert simulated.stats.by_status.keys() == {200}


async def test_concurrent_calls_of_many_accounts_share_one_session(
    simulated: SimulatedExchange,
    http_stack: Stack,
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        clients = [
            client_for(session, a) for a in simulated.accounts if a.account_type is AccountType.PM_1
        ]
        results = await asyncio.gather(*(c.pm_pro_account() for c in clients for _ in range(5)))

    assert len(results) == 5 * len(clients)
    assert simulated.stats.max_concurrency > 1
    assert simulated.stats.by_endpoint["api_time"] == session.clock.samples  # one clock for all


@pytest.mark.simulated(accounts=3, skew_ms=-45_000)
async def test_skewed_exchange_clock_is_measured_before_signing(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        info = await client_for(session, pick(simulated, AccountType.PM_1)).pm_pro_account()

    assert info.uni_mmr is not None
    assert simulated.stats.by_code[-1021] == 0


async def test_clock_that_jumps_mid_session_costs_one_resync(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        client = client_for(session, pick(simulated, AccountType.PM_1))
        await client.pm_pro_account()
        simulated.skew_ms = 20_000  # the exchange's clock jumps ahead

        await client.pm_pro_account()

    assert simulated.stats.by_code[-1021] == 1
    assert simulated.stats.by_endpoint["api_time"] == 2 * session.clock.samples


# -- every error class -------------------------------------------------------------------------


async def test_unknown_key_is_auth_error(simulated: SimulatedExchange, http_stack: Stack) -> None:
    async with AsyncClient(
        "k" * 64, secret="s" * 64, base_url=simulated.base_url, **http_stack
    ) as client:
        with pytest.raises(AuthError) as caught:
            await client.pm_pro_account()

    assert (caught.value.status, caught.value.code) == (401, -2015)


async def test_wrong_secret_is_auth_error_1022(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    account = pick(simulated, AccountType.PM_1)
    async with AsyncClient(
        account.api_key, secret="wrong", base_url=simulated.base_url, **http_stack
    ) as client:
        with pytest.raises(AuthError) as caught:
            await client.pm_pro_account()

    assert caught.value.code == -1022


async def test_wrong_private_key_is_auth_error_1022(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    account = pick(simulated, AccountType.PM_1, "ED25519")
    other = pick(simulated, AccountType.PM_3, "ED25519")
    async with AsyncClient(
        account.api_key, private_key=other.private_key, base_url=simulated.base_url, **http_stack
    ) as client:
        with pytest.raises(AuthError, match="-1022"):
            await client.pm_pro_account()


async def test_span_endpoint_for_a_pm_pro_account_is_auth_error(
    simulated: SimulatedExchange,
    http_stack: Stack,
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        with pytest.raises(AuthError, match="-2015"):
            await client_for(session, pick(simulated, AccountType.PM_1)).pm_pro_span_account()


async def test_missing_mandatory_parameter_is_bad_request(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    account = pick(simulated, AccountType.PM_1)
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        client = client_for(session, account)
        with pytest.raises(BadRequestError) as caught:
            await session._call(CLASSIC_PM_ACCOUNT, [], credentials=client._credentials)

    assert (caught.value.status, caught.value.code) == (400, -1102)


async def test_clock_the_client_cannot_follow_is_timestamp_error(http_stack: Stack) -> None:
    jumps = [0.0]

    def runaway() -> float:  # every reading of the server's clock is 20 s later than the last
        jumps[0] += 20.0
        return time.time() + jumps[0]

    async with (
        SimulatedExchange(accounts=3, clock=runaway) as ex,
        Session(base_url=ex.base_url, **http_stack) as session,
    ):
        with pytest.raises(TimestampError) as caught:
            await client_for(session, pick(ex, AccountType.PM_1)).pm_pro_account()

    assert caught.value.code == -1021
    assert ex.stats.by_code[-1021] == 2  # refused, re-measured, refused again


@pytest.mark.simulated(accounts=3, limits=Limits(papi_ip=40), window=0.5)
async def test_429_waits_out_retry_after_when_the_deadline_allows(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    # The governor believes the published 6,000; this exchange allows 40: it learns by a 429.
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        client = client_for(session, pick(simulated, AccountType.PM_2))
        for _ in range(4):
            await client.pm_balance()

    assert simulated.stats.by_status[429] == 1  # one refusal taught it; the rest waited
    assert simulated.stats.bans == 0


@pytest.mark.simulated(accounts=3, limits=Limits(papi_ip=40), window=5.0, window_mode="sliding")
async def test_429_is_rate_limit_error_when_the_deadline_comes_first(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        client = client_for(session, pick(simulated, AccountType.PM_2))
        await client.pm_balance()
        await client.pm_balance()
        with pytest.raises(RateLimitError) as limited:
            await client.pm_balance(timeout=1.0)
        with pytest.raises(RateLimitError):  # shut for everyone: refused without sending
            await client.pm_balance(timeout=1.0)

    assert limited.value.status == 429
    assert limited.value.retry_after is not None
    assert 0 < limited.value.retry_after <= 5.0
    assert simulated.stats.by_status[429] == 1
    assert simulated.stats.bans == 0


@pytest.mark.simulated(accounts=3, limits=Limits(papi_ip=40), window=5.0, window_mode="sliding")
async def test_two_processes_without_a_shared_governor_earn_an_ip_ban(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with (
        Session(base_url=simulated.base_url, **http_stack) as first,
        Session(
            base_url=simulated.base_url, **http_stack
        ) as second,  # its own governor: it knows nothing of first
    ):
        account = pick(simulated, AccountType.PM_2)
        await client_for(first, account).pm_balance()
        await client_for(first, account).pm_balance()
        with pytest.raises(RateLimitError):
            await client_for(first, account).pm_balance(timeout=1.0)
        await anyio.sleep(0.6)  # past the grace the exchange gives requests already on their way
        with pytest.raises(IPBannedError) as banned:
            await client_for(second, account).pm_balance(timeout=1.0)

    assert banned.value.retry_after == pytest.approx(10.0, abs=0.1)
    assert banned.value.banned_until is not None
    assert banned.value.banned_until > datetime.now(timezone.utc)
    assert simulated.stats.bans == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(fault, marks=pytest.mark.simulated(accounts=3, faults={fault: 1.0}))
        for fault in ("503", "html")
    ],
)
async def test_server_faults_are_retried_then_server_error(
    simulated: SimulatedExchange, fault: str, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, max_retries=2, **http_stack) as session:
        with pytest.raises(ServerError) as caught:
            await session._call(API_TIME, [], credentials=None)

    assert caught.value.status == (503 if fault == "503" else 502)
    assert simulated.stats.faults[fault] == 3  # the first try and two retries


@pytest.mark.simulated(accounts=3)
async def test_dropped_connection_is_transport_error(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        client = client_for(session, pick(simulated, AccountType.PM_1))
        await client.pm_pro_account()  # clock measured while the exchange is well
        simulated.faults = {"reset": 1.0}
        with pytest.raises(TransportError):
            await client.pm_pro_account()

    assert simulated.stats.faults["reset"] == 1 + session.max_retries


@pytest.mark.simulated(accounts=3, slow_seconds=1.0)
async def test_slow_answer_is_transport_error_at_the_deadline(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, timeout=0.3, **http_stack) as session:
        client = client_for(session, pick(simulated, AccountType.PM_1))
        await client.pm_pro_account()
        simulated.faults = {"slow": 1.0}
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"timeout of 0\.3 s"):
            await client.pm_pro_account()
        elapsed = time.monotonic() - started

    assert elapsed < 1.0  # the call ended at its 0.3 s deadline, not with the 1 s answer


@pytest.mark.simulated(accounts=3)
async def test_truncated_body_is_decode_error(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    async with Session(base_url=simulated.base_url, **http_stack) as session:
        client = client_for(session, pick(simulated, AccountType.PM_1))
        await client.pm_pro_account()
        simulated.faults = {"garbage": 1.0}
        with pytest.raises(DecodeError) as caught:
            await client.pm_pro_account()

    assert caught.value.endpoint == "GET /sapi/v1/portfolio/account"


@pytest.mark.simulated(accounts=30, seed=4, faults={"503": 0.05, "reset": 0.05, "html": 0.05})
async def test_faults_at_a_modest_rate_are_absorbed_by_retries(
    simulated: SimulatedExchange, http_stack: Stack
) -> None:
    # 15 % of requests fail; with 7 tries a call fails with odds 0.15**7 (2e-6 a call).
    async with Session(base_url=simulated.base_url, max_retries=6, **http_stack) as session:
        clients = [
            client_for(session, a) for a in simulated.accounts if a.account_type is AccountType.PM_1
        ]
        results = await asyncio.gather(*(c.pm_pro_account() for c in clients for _ in range(10)))

    assert len(results) == 10 * len(clients)
    assert sum(simulated.stats.faults.values()) > 0

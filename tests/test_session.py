"""Session configuration and lifecycle."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import httpx
import pytest

from binance_pm import AsyncClient, BinancePMError, Session, SessionError

from .conftest import Account, MockExchange, Stack
from .documented import fixture_bytes
from .hostile import Answer, HostileServer


def test_production_hosts_by_default() -> None:
    hosts = Session().hosts

    assert hosts == {
        "api": "https://api.binance.com",
        "sapi": "https://api.binance.com",
        "papi": "https://papi.binance.com",
        "fapi": "https://fapi.binance.com",
    }


def test_base_url_sends_every_family_to_one_host() -> None:
    assert set(Session(base_url="http://127.0.0.1:9000/").hosts.values()) == {
        "http://127.0.0.1:9000"
    }


def test_hosts_override_per_family() -> None:
    hosts = Session(
        base_url="http://127.0.0.1:9000", hosts={"fapi": "https://demo-fapi.binance.com"}
    ).hosts

    assert hosts["fapi"] == "https://demo-fapi.binance.com"
    assert hosts["papi"] == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"hosts": {"dapi": "https://x"}}, "unknown API family"),
        ({"base_url": "ftp://x"}, "http"),
        ({"recv_window": 0}, "recv_window"),
        ({"recv_window": 60_001}, "recv_window"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_options_are_refused_at_once(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Session(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -1.0, 0.0, 1e300])
def test_a_timeout_that_is_not_a_finite_positive_time_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Session(timeout=seconds)


async def test_a_timeout_of_infinity_for_one_call_is_refused(
    accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    async with Session(base_url="http://127.0.0.1:9", **http_stack) as s:
        client = s.client(account.api_key, **account.credentials())
        with pytest.raises(ValueError, match="timeout"):
            await client.pm_pro_account(timeout=math.inf)


def test_recv_window_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="recv_window"):
        Session(recv_window=5000.0)  # type: ignore[arg-type]


async def test_bad_per_call_recv_window_is_refused_before_sending(
    client: AsyncClient, mocked: MockExchange
) -> None:
    with pytest.raises(ValueError, match="recv_window"):
        await client.pm_pro_account(recv_window=70_000)

    assert mocked.requests == []


async def test_closed_session_refuses_calls(session: Session, account: Account) -> None:
    client = session.client(account.api_key, **account.credentials())
    await session.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.pm_pro_account()


async def test_closing_a_bound_client_leaves_the_session_open(
    session: Session, account: Account
) -> None:
    async with session.client(account.api_key, **account.credentials()) as client:
        await client.pm_pro_account()

    assert not session.closed
    await client.pm_pro_account()


async def test_closing_a_session_with_calls_in_flight_ends_them_with_a_typed_error(
    accounts: dict[str, Account], scripted: HostileServer, http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    scripted.push(*[Answer(stall=30)] * 3)  # no answer before the end of the test

    s = Session(base_url=scripted.url, max_retries=0, timeout=5.0, **http_stack)
    client = s.client(account.api_key, **account.credentials())
    calls = [asyncio.ensure_future(client.pm_pro_account()) for _ in range(3)]
    await asyncio.sleep(0.3)
    closed = time.monotonic()
    await s.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, BinancePMError) for r in results), results
    # At once, not at the calls' deadline (5 s): httpx lets a request run on when its
    # client closes, so the Session cancels its own.
    assert time.monotonic() - closed < 2.0
    with pytest.raises(SessionError):
        await client.pm_pro_account()
    with pytest.raises(SessionError):
        s.client(account.api_key, **account.credentials())


async def test_caller_owned_http_client_is_not_closed(mocked: MockExchange) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(mocked))
    async with Session(base_url="https://mocked.test", http=http):
        pass

    assert not http.is_closed
    await http.aclose()


def test_a_session_used_from_a_second_event_loop_says_so(accounts: dict[str, Account]) -> None:
    account = accounts["HMAC"]
    session_box: list[Session] = []

    async def first() -> None:
        async with HostileServer() as server:  # its good answer: the documented example
            s = Session(base_url=server.url)
            session_box.append(s)
            await s.client(account.api_key, **account.credentials()).pm_pro_account()

            outcome: list[BaseException | None] = []

            def other_loop(
                session: Session = s, into: list[BaseException | None] = outcome
            ) -> None:
                async def second() -> None:
                    await session.client(account.api_key, **account.credentials()).pm_pro_account()

                try:
                    asyncio.run(second())
                except BaseException as exc:
                    into.append(exc)
                else:
                    into.append(None)

            thread = threading.Thread(target=other_loop)
            thread.start()
            thread.join(10)
            assert isinstance(outcome[0], SessionError), outcome
            await s.aclose()

    asyncio.run(first())


async def test_respx_mocks_the_calls_of_a_session_given_a_callers_httpx_client(
    accounts: dict[str, Account],
) -> None:
    import respx

    account = accounts["HMAC"]
    with respx.mock(base_url="https://mocked.test", assert_all_called=True) as mock:
        mock.get("/api/v3/time").respond(200, json={"serverTime": 1_700_000_000_000})
        route = mock.get("/sapi/v1/portfolio/account").respond(
            200, content=fixture_bytes("sapi_v1_portfolio_account.json")
        )
        async with (
            httpx.AsyncClient() as http,
            Session(base_url="https://mocked.test", http=http) as s,
        ):
            info = await s.client(account.api_key, **account.credentials()).pm_pro_account()
    assert info.uni_mmr is not None
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.headers["X-MBX-APIKEY"] == account.api_key
    assert sent.url.query.split(b"&")[-1].startswith(b"signature=")

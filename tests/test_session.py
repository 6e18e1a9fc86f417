"""Session configuration and lifecycle."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from binance_pm import AsyncClient, Session, SessionError

from .conftest import Account, MockExchange
from .documented import fixture_bytes
from .scripted import answering, serve


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


async def test_caller_owned_http_client_is_not_closed(mocked: MockExchange) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(mocked))
    async with Session(base_url="https://mocked.test", http=http):
        pass

    assert not http.is_closed
    await http.aclose()


def test_a_session_used_from_a_second_event_loop_says_so(accounts: dict[str, Account]) -> None:
    account = accounts["HMAC"]
    body = fixture_bytes("sapi_v1_portfolio_account.json")
    session_box: list[Session] = []

    async def first() -> None:
        async for base_url, _app in serve(answering(200, body)):
            s = Session(base_url=base_url)
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

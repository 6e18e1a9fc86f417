"""The sending layers over real sockets, to the scripted server: exact bytes out, every failure
typed, and a proxy when one is set."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

import binance_pm._retry
from binance_pm import AsyncClient, ServerError, Session, TransportError
from binance_pm._endpoints import Endpoint
from binance_pm._http import HttpxSender
from binance_pm._sender import WireSender
from binance_pm.testing import LoopbackServer

from .conftest import Account, Stack
from .documented import DOCUMENTED
from .hostile import Answer, HostileServer, Raw

CUT: Endpoint[dict[str, str]] = Endpoint(
    "cut", "api", "/truncated", 1, signed=False, response=dict[str, str]
)
SLOW: Endpoint[dict[str, str]] = Endpoint(
    "slow", "api", "/slow", 1, signed=False, response=dict[str, str]
)
PAGE: Endpoint[dict[str, str]] = Endpoint(
    "page", "api", "/html502", 1, signed=False, response=dict[str, str]
)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance_pm._retry, "BASE_DELAY", 0.001)


async def test_default_stack_is_our_own_under_asyncio_and_httpx_when_given(
    http_stack: Stack,
) -> None:
    async with Session(**http_stack) as session:
        expected = HttpxSender if "http" in http_stack else WireSender
        assert isinstance(session._sender_here(), expected)


async def test_all_endpoints_over_loopback_with_signatures_verified_by_the_server(
    scripted: HostileServer, account: Account, http_stack: Stack
) -> None:
    async with AsyncClient(
        account.api_key, **account.credentials(), base_url=scripted.url, **http_stack
    ) as c:
        await c.pm_balance()
        await c.pm_account()
        await c.pm_pro_balance(asset="BTC")
        await c.pm_pro_account()
        await c.pm_pro_span_account()
        await c.classic_pm_account(asset="BTC")

    signed = [r for r in scripted.requests if r.path != "/api/v3/time"]
    assert [r.path for r in signed] == list(DOCUMENTED)
    for request in signed:
        payload, sep, signature = request.query.encode().rpartition(b"&signature=")
        assert sep, request
        assert account.verify(payload, signature.decode()), request.path
        assert request.header("x-mbx-apikey") == account.api_key


async def test_connection_refused_is_a_transport_error_after_retries(
    account: Account, http_stack: Stack
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens

    async with AsyncClient(
        account.api_key,
        **account.credentials(),
        base_url=f"http://127.0.0.1:{port}",
        max_retries=1,
        **http_stack,
    ) as client:
        with pytest.raises(TransportError, match=r"cannot connect to 127\.0\.0\.1"):
            await client.pm_pro_account()


async def test_body_cut_short_is_a_transport_error(
    scripted: HostileServer, http_stack: Stack
) -> None:
    # A Content-Length of 500 for 13 bytes, then the connection closed.
    cut = Answer(
        body=Raw(b'{"uniMMR": "1'), headers=((b"Content-Length", b"500"),), framing="close"
    )
    scripted.push(cut, cut)
    async with Session(base_url=scripted.url, max_retries=1, **http_stack) as session:
        with pytest.raises(TransportError, match=r"cut short|closed the connection"):
            await session._call(CUT, [], credentials=None)
    assert sum(1 for r in scripted.requests if r.path == "/truncated") == 2  # tried, retried once


async def test_slow_answer_ends_at_the_call_timeout(
    scripted: HostileServer, http_stack: Stack
) -> None:
    scripted.push(Answer(stall=1.0))  # an answer in a second, unless the client has gone by then
    async with Session(base_url=scripted.url, timeout=0.3, **http_stack) as session:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransportError, match=r"timeout of 0\.3 s|timed out"):
            await session._call(SLOW, [], credentials=None)
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_html_error_page_over_the_wire_is_a_server_error(
    scripted: HostileServer, http_stack: Stack
) -> None:
    scripted.push(Answer(status=502, body=Raw(b"<html><title>502 Bad Gateway</title></html>")))
    async with Session(base_url=scripted.url, max_retries=0, **http_stack) as session:
        with pytest.raises(ServerError, match="502 Bad Gateway"):
            await session._call(PAGE, [], credentials=None)


async def test_many_concurrent_calls_share_one_session(
    scripted: HostileServer, accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    async with Session(base_url=scripted.url, **http_stack) as session:
        client = session.client(account.api_key, **account.credentials())
        results = await asyncio.gather(*(client.pm_pro_account() for _ in range(200)))

    assert len(results) == 200
    assert all(r.uni_mmr == results[0].uni_mmr for r in results)


async def test_log_level_keeps_the_tracebacks_of_a_failing_app_out_of_the_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("fails on purpose")

    printed = {}
    for level in ("critical", "error"):
        async with LoopbackServer(failing, log_level=level) as srv, httpx.AsyncClient() as http:
            assert (await http.get(srv.base_url)).status_code == 500
        printed[level] = capsys.readouterr().err

    assert "fails on purpose" not in printed["critical"]
    assert "fails on purpose" in printed["error"]  # the same failure, told at "error"


async def test_a_proxy_carries_every_request_when_one_is_set(
    accounts: dict[str, Account],
    scripted: HostileServer,
    monkeypatch: pytest.MonkeyPatch,
    http_stack: Stack,
) -> None:
    account = accounts["HMAC"]
    monkeypatch.setenv("HTTP_PROXY", scripted.url)  # the scripted server, as a proxy
    monkeypatch.setenv("NO_PROXY", "")
    # Nothing listens at exchange.invalid: only the proxy can have answered.
    async with httpx.AsyncClient() as http:
        # Made here, after the proxy is set: an httpx client reads it when it is made.
        options: Stack = {"http": http} if "http" in http_stack else {}
        async with Session(base_url="http://exchange.invalid", **options) as s:
            info = await s.client(account.api_key, **account.credentials()).pm_pro_account()
    assert info.uni_mmr is not None
    lines = [request.raw.split(b"\r\n", 1)[0] for request in scripted.requests]
    assert lines[-1].startswith(b"GET http://exchange.invalid/sapi/v1/portfolio/account?")

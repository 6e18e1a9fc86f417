"""The Session is anyio code: it runs on trio too, with httpx's own transport."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
import trio

from binance_pm import AsyncClient
from binance_pm._http import HttpxSender

from .conftest import Account
from .hostile import HostileServer


@pytest.fixture
def threaded_server() -> Iterator[HostileServer]:
    """The scripted server on an asyncio loop in its own thread, for a trio client: good
    answers only (its ``url``, and its ``requests`` once the client is done)."""
    started = threading.Event()
    served: list[HostileServer] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with HostileServer() as server:
            served.append(server)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    try:
        yield served[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_client_runs_on_trio_over_real_sockets(
    threaded_server: HostileServer, accounts: dict[str, Account]
) -> None:
    account = accounts["ED25519"]

    async def main() -> Decimal | None:
        async with AsyncClient(
            account.api_key, **account.credentials(), base_url=threaded_server.url
        ) as c:
            sender = c.session._sender_here()
            assert isinstance(sender, HttpxSender)
            assert isinstance(sender._client._transport, httpx.AsyncHTTPTransport)
            info = await c.pm_pro_account()
            return info.uni_mmr

    assert trio.run(main) == Decimal("5167.92171923")


def test_on_trio_the_session_sends_from_its_source_address(
    threaded_server: HostileServer, accounts: dict[str, Account]
) -> None:
    account = accounts["HMAC"]

    async def main() -> None:
        async with AsyncClient(
            account.api_key,
            **account.credentials(),
            base_url=threaded_server.url,
            source_address="127.0.0.3",
        ) as c:
            await c.pm_pro_account()

    trio.run(main)
    requests = threaded_server.requests
    assert any(r.path == "/sapi/v1/portfolio/account" for r in requests)
    assert {r.peer for r in requests} == {"127.0.0.3"}  # the clock's requests and the call

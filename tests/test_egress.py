"""Egress IPs: the simulated exchange counts each client IP apart (IP limits, 429s and bans of
its own, as the exchange does), and a Session sends from the address it is given: its calls, its
clock checks and its streams alike."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from binance_pm import AsyncClient, Limits, Session
from binance_pm._endpoints import STATE_ENDPOINT
from binance_pm.testing import SimulatedExchange

from .conftest import HMAC_API_KEY, HMAC_SECRET

OTHER = "127.0.0.2"
THIRD = "127.0.0.3"


async def _ping_until_banned(base_url: str, source: str, most: int) -> list[int]:
    """Unsigned papi pings from ``source``, as fast as they go, until a 418 (or ``most``)."""
    statuses: list[int] = []
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        while len(statuses) < most and 418 not in statuses:
            statuses.append((await http.get("/papi/v1/ping")).status_code)
    return statuses


async def test_each_client_ip_has_its_own_ip_limits_and_bans() -> None:
    limits = Limits(papi_ip=40)
    async with SimulatedExchange(accounts=3, limits=limits, seed=1) as ex:
        # One IP goes past its limit and keeps on: it is banned.
        statuses = await _ping_until_banned(ex.base_url, OTHER, most=200)
        assert statuses[:40] == [200] * 40
        assert statuses[40] == 429
        assert statuses[-1] == 418
        # Another IP has the whole limit, and no ban.
        assert await _ping_until_banned(ex.base_url, THIRD, most=40) == [200] * 40
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            account = ex.accounts[0]
            client = session.client(account.api_key, **account.credentials())
            assert (await client.pm_balance()) is not None  # from 127.0.0.1: not banned
    weights = ex.stats.weight_by_window
    assert sum(weights[f"papi_ip@{THIRD}"].values()) == 40
    assert sum(weights[f"papi_ip@{OTHER}"].values()) > 40
    assert sum(weights["papi_ip"].values()) == 20  # 127.0.0.1's one balance call
    assert ex.stats.weight["papi_ip"] > 100  # every IP's weight, together


async def test_a_session_sends_everything_from_its_source_address() -> None:
    async with SimulatedExchange(accounts=6, seed=2) as ex:
        async with Session(base_url=ex.base_url, source_address=OTHER) as session:
            clients = {
                session.client(a.api_key, **a.credentials(), name=a.name): a.account_type
                for a in ex.accounts
                if a.account_type.value in ("PM_1", "PM_2")  # the products with streams
            }
            for client, kind in clients.items():
                await getattr(client, STATE_ENDPOINT[kind.value])()
            async with session.stream(clients) as updates:
                async for update in updates:
                    if update.connected:
                        break
        assert session.source_address == OTHER
    hosts = {client[0] for client in ex.stats.clients}
    assert hosts == {OTHER}  # the clock's, the calls' and the stream's connections
    budgets = set(ex.stats.weight_by_window)
    assert {b for b in budgets if b.endswith("_ip") or "_ip:" in b} == set()
    assert any(b.endswith(f"@{OTHER}") for b in budgets)


async def test_a_standalone_client_sends_from_its_source_address() -> None:
    async with SimulatedExchange(accounts=1, seed=3) as ex:
        account = ex.accounts[0]
        async with AsyncClient(
            account.api_key, **account.credentials(), base_url=ex.base_url, source_address=THIRD
        ) as client:
            await client.pm_balance()
    assert {client[0] for client in ex.stats.clients} == {THIRD}


def test_a_source_address_is_an_ip_address_of_the_sessions_own_connections() -> None:
    with pytest.raises(ValueError, match="must be an IP address"):
        Session(source_address="egress.example")
    with pytest.raises(TypeError, match="must be an IP address"):
        Session(source_address=2130706434)  # type: ignore[arg-type]
    http = httpx.AsyncClient()
    with pytest.raises(ValueError, match="bind your own"):
        Session(http=http, source_address=OTHER)
    asyncio.run(http.aclose())
    with pytest.raises(ValueError, match="bind your own"):
        AsyncClient(HMAC_API_KEY, secret=HMAC_SECRET, http=http, source_address=OTHER)

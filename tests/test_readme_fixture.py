"""The README's pytest fixture for the simulated exchange, exactly as shown there, in use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from binance_pm import AccountType, Session
from binance_pm.testing import SimulatedExchange


# --- README: "Testing your code without keys" ---------------------------------------------
@pytest.fixture
async def exchange() -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(accounts=6, window=1.0, seed=1) as ex:
        yield ex


@pytest.fixture
async def session(exchange: SimulatedExchange) -> AsyncIterator[Session]:
    async with Session(base_url=exchange.base_url) as s:
        yield s


async def test_my_risk_check(exchange: SimulatedExchange, session: Session) -> None:
    pro = [a for a in exchange.accounts if a.account_type is AccountType.PM_1]
    clients = [session.client(a.api_key, **a.credentials()) for a in pro]

    for client in clients:
        info = await client.pm_pro_account()
        assert info.uni_mmr is not None

    assert exchange.stats.by_status[200] == len(clients) + session.clock.samples


# --- end of README excerpt -----------------------------------------------------------------

"""An account's product: a key used on another product's endpoint says so, a client can be
told its product or find it out, and polls and streams then pick each account's own endpoint
and stream."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest

from binance_pm import (
    AccountType,
    AsyncClient,
    AuthError,
    Session,
    StreamUpdate,
    TransportError,
)
from binance_pm.testing import SimulatedExchange

pytestmark = pytest.mark.simulated(accounts=6, seed=7, push_every=0.3)


def account_of(exchange: SimulatedExchange, kind: str) -> tuple[str, dict[str, Any]]:
    account = next(a for a in exchange.accounts if a.account_type.value == kind)
    return account.api_key, account.credentials()


async def test_a_key_on_another_products_endpoint_says_which_products_it_serves(
    simulated: SimulatedExchange,
) -> None:
    key, keys = account_of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url) as session:
        with pytest.raises(AuthError) as refused:
            await session.client(key, **keys).pm_balance()
    error = refused.value
    assert error.code == -2015
    assert error.msg.startswith("Invalid API-key")  # the exchange's own words, kept apart
    assert error.hint is not None
    assert "pm_balance answers PM accounts only" in error.hint
    assert "PM Pro: pm_pro_account()" in error.hint
    assert "PM Pro SPAN: pm_pro_span_account()" in error.hint
    assert "detect_product()" in str(error)
    assert key not in str(error)


@pytest.mark.parametrize("kind", ["PM_1", "PM_2", "PM_3"])
async def test_detect_product_finds_each_accounts_product(
    simulated: SimulatedExchange, kind: str
) -> None:
    key, keys = account_of(simulated, kind)
    async with Session(base_url=simulated.base_url) as session:
        client = session.client(key, **keys)
        assert client.product is None
        assert await client.detect_product() is AccountType(kind)
        assert client.product is AccountType(kind)


async def test_detect_product_of_a_refused_key_is_an_auth_error(
    simulated: SimulatedExchange,
) -> None:
    async with AsyncClient("Z" * 64, secret="0" * 64, base_url=simulated.base_url) as client:
        with pytest.raises(AuthError) as refused:
            await client.detect_product()
    assert refused.value.code == -2015
    assert isinstance(refused.value.__cause__, AuthError)  # the first product's refusal
    assert client.product is None


@pytest.mark.parametrize(
    ("given", "kind"),
    [("PM", "PM_2"), ("pm pro", "PM_1"), ("PM  Pro SPAN", "PM_3"), ("PM_1", "PM_1")],
)
def test_a_product_is_given_by_name_or_type(given: str, kind: str) -> None:
    client = AsyncClient("k" * 64, secret="s" * 64, product=given)
    assert client.product is AccountType(kind)
    assert AsyncClient("k" * 64, secret="s" * 64, product=AccountType(kind)).product is (
        AccountType(kind)
    )


def test_a_wrong_product_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"product must be one of 'PM Pro' \(PM_1\).*'Classic'"):
        AsyncClient("k" * 64, secret="s" * 64, product="Classic")
    with pytest.raises(TypeError, match="product must be an AccountType or a str, not int"):
        AsyncClient("k" * 64, secret="s" * 64, product=2)  # type: ignore[arg-type]


async def test_poll_without_endpoints_polls_each_accounts_state(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        clients = [
            session.client(a.api_key, name=a.name, product=a.account_type, **dict(a.credentials()))
            for a in simulated.accounts
        ]
        seen: dict[str, str] = {}
        async with session.poll(clients, every=0.2) as updates:
            async for update in updates:
                assert update.error is None, update.error
                seen[update.name] = update.endpoint
                if len(seen) == len(clients):
                    break
    expected = {"PM_1": "pm_pro_account", "PM_2": "pm_account", "PM_3": "pm_pro_span_account"}
    for account in simulated.accounts:
        assert seen[account.name] == expected[account.account_type.value]


async def test_poll_without_endpoints_needs_every_product_known(
    simulated: SimulatedExchange,
) -> None:
    key, keys = account_of(simulated, "PM_2")
    async with Session(base_url=simulated.base_url) as session:
        client = session.client(key, name="desk-2", **keys)
        with pytest.raises(TypeError, match=r"'desk-2'.*detect_product\(\)"):
            session.poll([client])


async def test_stream_without_a_product_follows_each_accounts_own(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        clients = []
        for account in simulated.accounts:
            keys: dict[str, Any] = account.credentials()
            client = session.client(account.api_key, name=account.name, **keys)
            await client.detect_product()
            clients.append(client)
        connected: dict[str, StreamUpdate] = {}
        with anyio.fail_after(20):
            async with session.stream(clients) as updates:
                async for update in updates:
                    assert update.error is None, update.error  # none refused, none final
                    if update.connected:
                        connected[update.name] = update
                    if len(connected) == len(clients):
                        break
    for account in simulated.accounts:
        wanted = "pm" if account.account_type is AccountType.PM_2 else "pm_pro"
        assert connected[account.name].product == wanted


async def test_detect_product_without_an_answer_keeps_nothing_and_says_why() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncClient(
        "k" * 64, secret="s" * 64, base_url=f"http://127.0.0.1:{port}", timeout=2.0
    ) as client:
        with pytest.raises(TransportError):
            await client.detect_product()  # not taken for a refusal: no guess
    assert client.product is None


def test_an_account_type_this_package_does_not_know_is_not_a_product() -> None:
    with pytest.raises(ValueError, match="'PM_9'"):
        AsyncClient("k" * 64, secret="s" * 64, product=AccountType("PM_9"))


async def test_stream_takes_a_product_by_its_name(simulated: SimulatedExchange) -> None:
    key, keys = account_of(simulated, "PM_2")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        client = session.client(key, name="desk-2", **keys)
        with anyio.fail_after(20):
            async with session.stream([client], product="PM") as updates:
                async for update in updates:
                    assert update.error is None, update.error
                    if update.connected:
                        assert update.product == "pm"
                        break
        with pytest.raises(ValueError, match="'pm' or 'pm_pro', or a product such as 'PM'"):
            session.stream([client], product="PM Classic")

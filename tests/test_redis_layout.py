"""Where the Redis store keeps what it counts: every key name from one layout, the same names as
before (processes of two versions share one Redis during an upgrade), no API key in any, and the
Lua scripts shipped as package files."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from importlib import resources

import pytest
import redis.asyncio as aioredis

from binance_pm._redis_keys import KeyLayout, budget_key
from binance_pm.redis import RedisStore

from .redis_server import RedisServer, running_server

API_KEY = "k" * 64
HASHED = hashlib.sha256(API_KEY.encode()).hexdigest()[:24]


def test_each_script_s_keys_come_in_the_order_its_header_says() -> None:
    keys = KeyLayout("bp")

    assert keys.charge(["papi_ip"], family="papi") == [
        *(f"bp:papi_ip:{role}" for role in "zseck"),
        "bp:marker",
        "bp:pause",
        "bp:ban:papi",
    ]
    assert keys.finish(["papi_ip", "sapi_ip"], family="sapi") == [
        *(f"bp:papi_ip:{role}" for role in "zsec"),
        *(f"bp:sapi_ip:{role}" for role in "zsec"),
        "bp:ban:sapi",
    ]
    assert keys.cancel(["papi_ip"]) == ["bp:papi_ip:z", "bp:papi_ip:s"]
    assert keys.read(["papi_ip"], families=["papi", "sapi"]) == [
        "bp:papi_ip:z",
        "bp:papi_ip:e",
        "bp:papi_ip:c",
        "bp:pause",
        "bp:ban:papi",
        "bp:ban:sapi",
    ]


def test_a_uid_budget_is_named_by_a_hash_of_its_api_key() -> None:
    assert budget_key(f"sapi_uid:{API_KEY}") == f"sapi_uid:{HASHED}"
    assert KeyLayout("bp").budget(f"sapi_uid:{API_KEY}", "z") == [f"bp:sapi_uid:{HASHED}:z"]
    assert budget_key("sapi_ip") == "sapi_ip"


@pytest.mark.parametrize("prefix", ["", "two words", "tab\there"])
def test_a_prefix_must_be_one_word(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        KeyLayout(prefix)


def test_the_lua_scripts_are_package_files() -> None:
    folder = resources.files("binance_pm") / "_redis_lua"

    scripts = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))

    assert scripts == [
        "cancel.lua",
        "charge.lua",
        "finish.lua",
        "fleet_beat.lua",
        "fleet_lease.lua",
        "read.lua",
    ]
    for name in scripts:
        assert "redis.call" in (folder / name).read_text("utf-8")


# -- against a real Redis -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with running_server() as running:
        yield running


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    made = aioredis.Redis.from_url(server.url)
    yield made
    await made.aclose()


async def test_every_key_the_store_writes_is_one_the_layout_names(
    server: RedisServer, client: aioredis.Redis
) -> None:
    store = RedisStore(server.url, prefix="lay", timeout=0.5)
    budgets = [(f"sapi_uid:{API_KEY}", 5, 5), ("sapi_ip", 5, 100)]
    names = [name for name, _, _ in budgets]
    try:
        first = store.member()
        assert await store.charge(budgets, family="sapi", member=first, hold=5, window=1) == 0.0
        second = store.member()
        assert await store.charge(budgets, family="sapi", member=second, hold=5, window=1) > 0
        # The refused one claimed the room it needs; the first's answer was a 429, then a 418.
        await store.finish(
            [(name, weight, 9, True) for name, weight, _ in budgets],
            family="sapi",
            member=first,
            window=1,
            shut=0.5,
            ban=0.5,
        )
        await store.read(names, families=["sapi"])
    finally:
        await store.aclose()
    layout = KeyLayout("lay")
    named = {*layout.charge(names, family="sapi"), *layout.read(names, families=["sapi"])}

    written = {key.decode() async for key in client.scan_iter("lay:*")}

    assert written <= named
    assert {f"lay:sapi_uid:{HASHED}:k", "lay:sapi_ip:c", "lay:ban:sapi"} <= written
    assert not any(API_KEY[:16] in key for key in written)

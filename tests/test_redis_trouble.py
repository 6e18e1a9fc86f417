"""The Redis store when Redis misbehaves: its keys flushed while two processes poll, a server
frozen mid-run (``SIGSTOP``) or a port that accepts and never answers, and the counts every
process shares, read back. Each test starts a ``redis-server`` of its own: they flush it and
freeze it."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from binance_pm import Governor, GovernorUnavailable, Session
from binance_pm._endpoints import PM_BALANCE, PM_PRO_ACCOUNT, PM_PRO_BALANCE, PM_PRO_SPAN_ACCOUNT
from binance_pm.redis import RedisStore
from binance_pm.testing import SimulatedExchange

from .redis_server import RedisServer, running_server
from .served import serve, stats

WINDOW = 1.0


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port on loopback that accepts connections (the kernel's backlog) and never
    answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
async def stores() -> AsyncIterator[list[RedisStore]]:
    made: list[RedisStore] = []
    yield made
    for store in made:
        await store.aclose()


def deadline(seconds: float) -> float:
    return anyio.current_time() + seconds


# -- lost keys ------------------------------------------------------------------------------


async def test_a_flush_pauses_every_process_that_saw_the_counts_for_a_window(
    server: RedisServer, stores: list[RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    stores += [RedisStore(server.url, prefix="p", timeout=0.5) for _ in range(2)]
    a, b = (Governor(window=WINDOW, store=store) for store in stores)
    for gov in (a, b):  # each has charged once: each knows the marker
        permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
        permit.complete(200, {})
        await permit.settle()
    with redis.Redis.from_url(server.url) as client:
        client.flushall()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="binance_pm"):
        first = await a.acquire(PM_BALANCE, account="", deadline=deadline(5))
        second = await b.acquire(PM_BALANCE, account="", deadline=deadline(5))
    waited = time.monotonic() - started
    assert waited >= WINDOW * 0.9  # nothing charged until a window after the loss was seen
    assert "lost its counts" in caplog.text
    for permit in (first, second):
        permit.cancel()
        await permit.settle()


async def test_after_a_flush_a_ban_known_here_outlasts_the_window(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    stores.append(RedisStore(server.url, prefix="p", timeout=0.5))
    gov = Governor(window=WINDOW, store=stores[0])
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
    permit.complete(418, {"Retry-After": "2.5"})
    await permit.settle()
    with redis.Redis.from_url(server.url) as client:
        client.flushall()  # the ban key goes with the counts
    started = time.monotonic()
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(6))
    assert time.monotonic() - started >= 2.0  # the ban's end, not one window
    permit.cancel()
    await permit.settle()


def test_twenty_flushalls_under_two_polling_processes_draw_no_429(server: RedisServer) -> None:
    limits = {"papi_ip": 600, "sapi_ip": 200, "sapi_uid": 10}
    args = ["--accounts", "40", "--window", str(WINDOW)]
    for name, limit in limits.items():
        args += [f"--{name.replace('_', '-')}", str(limit)]
    flushed: list[float] = []

    def flush_twenty_times() -> None:
        time.sleep(1.5)  # both processes poll flat out first
        with redis.Redis.from_url(server.url, socket_timeout=5) as client:
            for _ in range(20):
                client.flushall()
                flushed.append(time.time())
                time.sleep(0.3)

    with serve(*args) as (_, base_url, accounts):
        results = run_fleet(
            server.url, base_url, accounts, limits, processes=2, seconds=11.0,
            while_running=flush_twenty_times,
        )  # fmt: skip
        exchange = stats(base_url, arrivals=True)

    assert len(flushed) == 20
    assert exchange["by_status"].get("429", 0) == 0
    assert exchange["by_status"].get("418", 0) == 0
    assert [r["errors"] for r in results] == [{}, {}]
    # And the fleet went on once the flushes stopped and a window had passed.
    arrived_after = [at for at, _, _ in exchange["arrivals"] if at / 1000 > flushed[-1] + WINDOW]
    assert len(arrived_after) > 20


def run_fleet(
    redis_url: str,
    base_url: str,
    accounts: list[dict[str, str]],
    limits: dict[str, int],
    *,
    processes: int,
    seconds: float,
    while_running: Callable[[], None],
) -> list[dict[str, Any]]:
    """``processes`` workers (``fleet_worker.py``) polling their share of ``accounts`` for
    ``seconds`` through one Redis; ``while_running`` is called once they all have started."""
    worker = Path(__file__).parent / "fleet_worker.py"
    prefix = f"f{time.monotonic_ns()}"
    running = []
    try:
        for i in range(processes):
            job = {
                "base_url": base_url,
                "redis": redis_url,
                "prefix": prefix,
                "window": WINDOW,
                "limits": limits,
                "seconds": seconds,
                "accounts": accounts[i::processes],
            }
            process = subprocess.Popen(
                [sys.executable, str(worker)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            running.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
        for process in running:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in running:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        while_running()
        results = []
        for process in running:
            assert process.stdout is not None
            results.append(json.loads(process.stdout.readline()))
        return results
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


# -- a hung Redis ---------------------------------------------------------------------------


HANGS = ["sigstop", "silent port"]


def hung_store(how: str, server: RedisServer, silent_port: int) -> RedisStore:
    """A store whose Redis hangs: frozen after a first answer, or never answering at all."""
    if how == "sigstop":
        return RedisStore(server.url, prefix="p", timeout=1.0)
    return RedisStore(f"redis://127.0.0.1:{silent_port}/0", prefix="p", timeout=1.0)


@pytest.mark.parametrize("how", HANGS)
async def test_with_redis_hung_a_call_ends_in_governor_unavailable_at_its_deadline_unsent(
    how: str, server: RedisServer, silent_port: int, stores: list[RedisStore]
) -> None:
    store = hung_store(how, server, silent_port)
    stores.append(store)
    governor = Governor(window=WINDOW, store=store)
    async with SimulatedExchange(accounts=1, window=WINDOW) as ex:
        account = ex.accounts[0]
        async with Session(base_url=ex.base_url, governor=governor, timeout=2.0) as session:
            client = session.client(account.api_key, **account.credentials())
            if how == "sigstop":
                await client.pm_balance()  # the clock and the store are warm
                server.pause()
            sent = ex.stats.requests
            for _ in range(2):  # the first opens the breaker, the second finds it open
                started = time.monotonic()
                with pytest.raises(GovernorUnavailable, match="nothing was sent"):
                    await client.pm_balance()
                assert 1.5 < time.monotonic() - started < 3.0  # at its deadline, loosely
            assert ex.stats.requests == sent


@pytest.mark.parametrize("how", HANGS)
async def test_with_redis_hung_and_on_store_error_local_five_calls_take_under_3_s(
    how: str,
    server: RedisServer,
    silent_port: int,
    stores: list[RedisStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = hung_store(how, server, silent_port)
    stores.append(store)
    governor = Governor(window=WINDOW, store=store, on_store_error="local")
    async with SimulatedExchange(accounts=1, window=WINDOW) as ex:
        account = ex.accounts[0]
        async with Session(base_url=ex.base_url, governor=governor, timeout=3.0) as session:
            client = session.client(account.api_key, **account.credentials())
            if how == "sigstop":
                await client.pm_balance()
                server.pause()
            sent = ex.stats.by_endpoint["pm_balance"]
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="binance_pm"):
                for _ in range(5):
                    await client.pm_balance()
            assert time.monotonic() - started < 3.0  # the store's timeout paid once, not five
            assert ex.stats.by_endpoint["pm_balance"] - sent == 5
    assert caplog.text.count("counts its own weight alone") == 1  # once per opening


async def test_calls_in_line_behind_a_frozen_store_all_end_in_governor_unavailable(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    stores.append(RedisStore(server.url, prefix="p", timeout=1.0))
    gov = Governor(window=WINDOW, store=stores[0])
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
    permit.cancel()
    await permit.settle()
    server.pause()
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await gov.acquire(PM_BALANCE, account="", deadline=deadline(1.5))
        except Exception as exc:
            errors.append(exc)

    started = time.monotonic()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(call)
    assert [type(e) for e in errors] == [GovernorUnavailable] * 5  # not GovernorTimeout
    assert time.monotonic() - started < 2.5


async def test_telling_a_frozen_store_of_an_answer_ends_before_the_call_s_deadline(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    stores.append(RedisStore(server.url, prefix="p", timeout=5.0))
    gov = Governor(window=WINDOW, store=stores[0])
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(0.6))
    server.pause()
    permit.complete(200, {})
    started = time.monotonic()
    await permit.settle()
    assert time.monotonic() - started < 0.6  # the answer is not held past its deadline


async def test_the_breaker_closes_when_the_frozen_server_answers_again(
    server: RedisServer, stores: list[RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    stores.append(RedisStore(server.url, prefix="p", timeout=0.3))
    gov = Governor(window=WINDOW, store=stores[0])
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
    permit.cancel()
    await permit.settle()
    server.pause()
    try:
        with pytest.raises(GovernorUnavailable):
            await gov.acquire(PM_BALANCE, account="", deadline=deadline(0.8))
    finally:
        server.resume()
    with caplog.at_level(logging.INFO, logger="binance_pm"):
        permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
    assert "answers again" in caplog.text
    shared = await gov.asnapshot()  # charged in the store, not in this process alone
    # (The charge the frozen server read before it froze ran when it woke: it holds its
    # weight until its call's deadline and a window, safe side.)
    assert shared["papi_ip"].used in (PM_BALANCE.weight, 2 * PM_BALANCE.weight)
    assert gov.snapshot()["papi_ip"].used == 0
    permit.cancel()
    await permit.settle()


async def test_a_call_cancelled_while_the_store_hangs_is_cancelled(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    stores.append(RedisStore(server.url, prefix="p", timeout=5.0))
    gov = Governor(window=WINDOW, store=stores[0])
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
    permit.cancel()
    await permit.settle()
    server.pause()
    try:
        for _ in range(2):  # mid round trip, then while waiting for the store to come back
            with anyio.move_on_after(0.3) as scope:
                await gov.acquire(PM_BALANCE, account="", deadline=deadline(10))
            assert scope.cancelled_caught
    finally:
        server.resume()
    # The cancelled probe gave its turn back: the next call finds the store.
    permit = await gov.acquire(PM_BALANCE, account="", deadline=deadline(5))
    permit.cancel()
    await permit.settle()


# -- the shared counts ----------------------------------------------------------------------


async def test_asnapshot_shows_what_every_process_holds_and_snapshot_only_this_one(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    stores += [RedisStore(server.url, prefix="p", timeout=0.5) for _ in range(2)]
    a, b = (Governor(window=WINDOW, store=store) for store in stores)
    permit = await a.acquire(PM_BALANCE, account="", deadline=deadline(5))
    permit.complete(429, {"Retry-After": "0.5", "X-MBX-USED-WEIGHT-1M": "6020"})
    await permit.settle()

    shared = (await b.asnapshot())["papi_ip"]

    assert shared.used == 6020  # a's weight, and what the exchange reported beyond it
    assert shared.external == 6020 - PM_BALANCE.weight
    assert 0 < shared.closed_for <= 0.5  # a's 429 shuts it for b too
    assert 0 < shared.resets_in <= WINDOW
    assert b.snapshot()["papi_ip"].used == 0  # b's own count: idle
    assert (await a.asnapshot())["papi_ip"].rejections == 1


async def test_per_endpoint_sapi_budgets_are_shared_and_a_uid_answer_reports_its_own(
    server: RedisServer, stores: list[RedisStore]
) -> None:
    stores += [RedisStore(server.url, prefix="e", timeout=0.5) for _ in range(2)]
    a, b = (Governor(window=WINDOW, store=store, sapi_scope="endpoint") for store in stores)
    for endpoint, reported in ((PM_PRO_BALANCE, "20"), (PM_PRO_SPAN_ACCOUNT, "5")):
        permit = await a.acquire(endpoint, account="k", deadline=deadline(5))
        permit.complete(200, {"X-SAPI-USED-IP-WEIGHT-1M": reported})
        await permit.settle()
    permit = await a.acquire(PM_PRO_ACCOUNT, account="k", deadline=deadline(5))
    permit.complete(200, {"X-SAPI-USED-IP-WEIGHT-1M": "7", "X-SAPI-USED-UID-WEIGHT-1M": "5"})
    await permit.settle()

    shared = await b.asnapshot()

    assert shared["sapi_ip:pm_pro_balance"].used == 20
    assert shared["sapi_ip:pm_pro_span_account"].used == 5
    assert "sapi_ip" not in shared
    assert shared["sapi_ip:pm_pro_account"].external == 7  # reported on the UID call's own


async def test_asnapshot_without_a_store_is_snapshot() -> None:
    gov = Governor()
    assert await gov.asnapshot() == gov.snapshot()


async def test_asnapshot_with_the_store_hung_raises_governor_unavailable(
    silent_port: int, stores: list[RedisStore]
) -> None:
    stores.append(RedisStore(f"redis://127.0.0.1:{silent_port}/0", prefix="p", timeout=0.3))
    gov = Governor(window=WINDOW, store=stores[0])
    with anyio.fail_after(5), pytest.raises(GovernorUnavailable):
        await gov.asnapshot()

"""The governor's budget of stream connection attempts, run under trio's MockClock: never more
than the limit in any window, the lowest rank first, refusals shut it (429) or ban the IP
(418), and a cancelled waiter takes nothing."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from binance_pm import Governor, GovernorTimeout, Limits
from binance_pm._attempts import ConnectionBudget


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def governor(limit: int = 10, window: float = 5.0) -> Governor:
    return Governor(clock=trio.current_time, limits=Limits(ws_connect=limit, ws_window=window))


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t - window < u <= t) for t in times)


def test_attempts_never_pass_the_limit_in_any_window_and_go_as_soon_as_it_allows() -> None:
    async def main() -> tuple[list[float], float]:
        budget = governor(limit=10, window=5.0).connections
        granted: list[float] = []

        async def connect() -> None:
            attempt = await budget.acquire()
            granted.append(trio.current_time())
            await trio.sleep(0.05)  # the handshake
            attempt.sent(101)

        async with trio.open_nursery() as nursery:
            for _ in range(35):
                nursery.start_soon(connect)
        return granted, trio.current_time()

    granted, _ = run(main)
    assert len(granted) == 35
    assert most_in_any_window(granted, 5.0) <= 10
    # Four rounds: at 0, then one window after each round's handshakes ended.
    assert max(granted) == pytest.approx(3 * 5.05, abs=0.2)


def test_the_lowest_rank_goes_first_then_arrival() -> None:
    async def main() -> list[str]:
        budget = governor(limit=1, window=5.0).connections
        order: list[str] = []

        async def connect(name: str, rank: float) -> None:
            attempt = await budget.acquire(rank)
            order.append(name)
            attempt.sent(101)

        async with trio.open_nursery() as nursery:
            for name, rank in [("a", math.inf), ("b", 3.0), ("c", 1.2), ("d", math.inf), ("e", 2)]:
                nursery.start_soon(connect, name, rank)
                await trio.lowlevel.checkpoint()
        return order

    order = run(main)
    # "a" goes at once (nobody waits yet); then, as room comes, the riskiest first.
    assert order == ["a", "c", "e", "b", "d"]


def test_a_refused_handshake_shuts_the_budget_for_its_retry_after() -> None:
    async def main() -> float:
        budget = governor(limit=100, window=5.0).connections
        attempt = await budget.acquire()
        attempt.sent(429, 30.0)
        await budget.acquire()
        return trio.current_time()

    assert run(main) == pytest.approx(30.0, abs=0.01)


def test_a_banned_handshake_bans_every_family_and_a_rest_ban_stops_connections() -> None:
    async def main() -> dict[str, float]:
        gov = governor()
        attempt = await gov.connections.acquire()
        attempt.sent(418, 120.0)
        shut = {name: state.closed_for for name, state in gov.snapshot().items()}
        gov.reopen()
        gov.ban_ip(0.0)
        return shut

    shut = run(main)
    assert shut["papi_ip"] == pytest.approx(120.0)
    assert shut["fapi_ip"] == pytest.approx(120.0)
    assert shut["ws_connect"] == pytest.approx(120.0)


def test_a_waiter_cancelled_or_timed_out_takes_nothing() -> None:
    async def main() -> tuple[int, int]:
        budget = governor(limit=1, window=5.0).connections
        first = await budget.acquire()
        first.sent(101)
        with trio.move_on_after(1.0):
            await budget.acquire()  # cancelled while waiting
        with pytest.raises(GovernorTimeout, match="ws_connect"):
            await budget.acquire(deadline=trio.current_time() + 1.0)
        waiting = budget.waiting()
        attempt = await budget.acquire()  # at 5.0, when the first attempt leaves the window
        attempt.cancel()  # never sent: given back
        again = await budget.acquire()
        again.sent(101)
        return waiting, round(trio.current_time())

    assert run(main) == (0, 5)


def test_the_time_to_connect_a_desk_is_what_the_limit_allows() -> None:
    budget = ConnectionBudget(
        300, 300.0, clock=lambda: 0.0, banned_until={"ws": 0.0}, ban=lambda seconds: None
    )
    assert budget.seconds_to_connect(300) == 0
    assert budget.seconds_to_connect(1_000) == 3 * 300.0  # 16.7 minutes: 300, 300, 300, 100
    assert budget.seconds_to_connect(10_000) == 33 * 300.0


def test_the_snapshot_shows_the_connection_budget() -> None:
    state = Governor().snapshot()["ws_connect"]
    assert (state.limit, state.used, state.waiters) == (300, 0, 0)

"""The exchange clock: midpoint of the best round trip, shared, lazy, refreshed."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from binance_pm import DecodeError, TransportError
from binance_pm._clock import ExchangeClock


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def server(wall: FakeWall, *, offset_ms: float, trips: list[tuple[float, float]]):  # type: ignore[no-untyped-def]
    """A time endpoint whose answers take (out, back) seconds, the server reading its clock
    after ``out``."""
    queue = list(trips)

    async def fetch() -> int:
        out, back = queue.pop(0)
        wall.now += out
        reading = int(wall.now * 1000 + offset_ms)
        wall.now += back
        return reading

    return fetch


async def test_offset_is_measured_at_the_midpoint_of_the_round_trip() -> None:
    wall = FakeWall()
    clock = ExchangeClock(samples=1, wall=wall)

    await clock.ensure(server(wall, offset_ms=250.0, trips=[(0.1, 0.1)]))

    assert clock.offset_ms == pytest.approx(250.0, abs=1)
    assert clock.now_ms() == pytest.approx(wall.now * 1000 + 250, abs=1)


async def test_the_sample_with_the_shortest_round_trip_wins() -> None:
    wall = FakeWall()
    clock = ExchangeClock(samples=3, wall=wall)
    # Asymmetric trips skew the midpoint; the short one is nearly exact.
    trips = [(0.4, 0.01), (0.001, 0.001), (0.01, 0.3)]

    await clock.ensure(server(wall, offset_ms=-500.0, trips=trips))

    assert clock.offset_ms == pytest.approx(-500.0, abs=2)
    assert clock.rtt_ms == pytest.approx(2.0, abs=0.01)


async def test_measured_once_until_stale_then_again() -> None:
    wall = FakeWall()
    clock = ExchangeClock(samples=1, refresh_interval=60.0, wall=wall)
    fetch = server(wall, offset_ms=0.0, trips=[(0.0, 0.0)] * 2)

    await clock.ensure(fetch)
    await clock.ensure(fetch)
    assert clock.generation == 1
    wall.now += 61
    await clock.ensure(fetch)

    assert clock.generation == 2


async def test_concurrent_first_requests_measure_once() -> None:
    wall = FakeWall()
    clock = ExchangeClock(samples=1, wall=wall)
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await anyio.lowlevel.checkpoint()
        return int(wall.now * 1000)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(clock.ensure, fetch)

    assert calls == 1


async def test_resync_after_someone_else_resynced_does_nothing() -> None:
    wall = FakeWall()
    clock = ExchangeClock(samples=1, wall=wall)
    fetch = server(wall, offset_ms=0.0, trips=[(0.0, 0.0)] * 2)
    await clock.ensure(fetch)
    seen = clock.generation
    await clock.resync(fetch, seen=seen)

    await clock.resync(fetch, seen=seen)  # a second task that saw the same -1021

    assert clock.generation == seen + 1


async def test_failed_refresh_keeps_the_old_offset() -> None:
    wall = FakeWall()
    clock = ExchangeClock(samples=1, refresh_interval=1.0, wall=wall)
    await clock.ensure(server(wall, offset_ms=42.0, trips=[(0.0, 0.0)]))
    wall.now += 5

    async def broken() -> int:
        raise TransportError("ConnectError", endpoint="GET /api/v3/time")

    await clock.ensure(broken)

    assert clock.offset_ms == pytest.approx(42.0, abs=1)


async def test_first_measurement_failure_is_raised() -> None:
    clock = ExchangeClock(samples=1)

    async def broken() -> int:
        raise TransportError("ConnectError", endpoint="GET /api/v3/time")

    with pytest.raises(TransportError):
        await clock.ensure(broken)


@pytest.mark.parametrize("reading", [10**30, -(10**15), 0, 10**5])
async def test_an_implausible_server_time_is_a_decode_error_and_the_offset_stays(
    reading: int,
) -> None:
    clock = ExchangeClock(samples=1)

    async def good() -> int:
        return time.time_ns() // 10**6 + 1000

    async def bad() -> int:
        return reading

    await clock.resync(good, seen=clock.generation)
    offset = clock.offset_ms
    with pytest.raises(DecodeError, match="serverTime"):
        await clock.resync(bad, seen=clock.generation)
    assert clock.offset_ms == offset

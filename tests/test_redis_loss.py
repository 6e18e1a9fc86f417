"""How a process on the Redis store notices lost counts and holds its charges: the detector on a
hand-moved clock, then a store on that clock against a real ``redis-server`` that is flushed
and restarted. Nothing sleeps to let a pause pass: the test moves the clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from binance_pm._hook import StoreError
from binance_pm._redis_loss import LossDetector, Why
from binance_pm.redis import RedisStore

from .hand_clock import HandClock
from .redis_server import RedisServer, running_server

WINDOW = 1.0


# -- the detector alone ---------------------------------------------------------------------


def test_a_new_detector_asks_the_server_before_its_first_charge() -> None:
    loss = LossDetector(HandClock())
    assert loss.must_ask_server

    loss.server("run-a", window=WINDOW)

    assert not loss.must_ask_server
    assert loss.paused_for() == 0.0


def test_after_a_failure_it_asks_the_server_again() -> None:
    loss = LossDetector(HandClock())
    loss.server("run-a", window=WINDOW)

    loss.failed()

    assert loss.must_ask_server


def test_the_same_server_after_a_failure_pauses_nothing() -> None:
    clock = HandClock()
    loss = LossDetector(clock)
    loss.server("run-a", window=WINDOW)
    loss.failed()
    clock.now += 0.5

    loss.server("run-a", window=WINDOW)

    assert loss.paused_for() == 0.0
    assert not loss.must_ask_server


def test_a_restarted_server_pauses_until_a_window_after_the_first_failure() -> None:
    clock = HandClock(100.0)
    loss = LossDetector(clock)
    loss.server("run-a", window=WINDOW)
    loss.answer("marker-1", Why.ROOM, 0.0)
    loss.failed()  # at 100.0: the one that counts
    clock.now = 100.3
    loss.failed()
    clock.now = 100.4

    loss.server("run-b", window=WINDOW)

    assert loss.paused_for() == pytest.approx(0.6)
    assert loss.marker == ""  # the new server has none: that is no second loss
    clock.now = 101.0
    assert loss.paused_for() == 0.0


def test_a_first_server_met_after_failures_is_no_restart() -> None:
    loss = LossDetector(HandClock())
    loss.failed()

    loss.server("run-a", window=WINDOW)

    assert loss.paused_for() == 0.0


ANSWERS = [
    # why, wait -> seconds paused here, seconds a loss found now would pause for
    (Why.ROOM, 0.0, 0.0, WINDOW),
    (Why.ROOM, 0.3, 0.0, WINDOW),  # no room is no pause
    (Why.SHUT, 2.5, 0.0, 2.5),  # a 429 or 418 outlasting the window lengthens a loss's pause
    (Why.PAUSED, 0.7, 0.7, WINDOW),  # another process found the loss: held here too
    (Why.LOST, 1.0, 1.0, WINDOW),
]


@pytest.mark.parametrize(("why", "wait", "paused", "loss_pause"), ANSWERS)
def test_what_a_charge_answered_is_kept_on_the_clock(
    why: Why, wait: float, paused: float, loss_pause: float
) -> None:
    loss = LossDetector(HandClock())

    loss.answer("marker-2", why, wait)

    assert loss.marker == "marker-2"
    assert loss.paused_for() == pytest.approx(paused)
    assert loss.pause_for_loss(WINDOW) == pytest.approx(loss_pause)


def test_a_pause_counts_down_with_the_clock_and_never_shortens() -> None:
    clock = HandClock(100.0)
    loss = LossDetector(clock)
    loss.answer("m", Why.LOST, 2.0)
    clock.now = 100.5

    loss.answer("m", Why.PAUSED, 0.5)

    assert loss.paused_for() == pytest.approx(1.5)
    clock.now = 102.0
    assert loss.paused_for() == 0.0


def test_a_ban_told_to_the_store_outlasts_the_window_in_a_loss_s_pause() -> None:
    clock = HandClock(100.0)
    loss = LossDetector(clock)

    loss.shut(3.0)

    assert loss.pause_for_loss(WINDOW) == pytest.approx(3.0)
    clock.now = 102.5
    assert loss.pause_for_loss(WINDOW) == WINDOW


# -- a store on a hand clock, against a real Redis -------------------------------------------


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def clock() -> HandClock:
    return HandClock(100.0)


@pytest.fixture
async def store(server: RedisServer, clock: HandClock) -> AsyncIterator[RedisStore]:
    made = RedisStore(server.url, prefix="loss", timeout=0.3, clock=clock)
    yield made
    await made.aclose()


async def charge(store: RedisStore) -> float:
    return await store.charge(
        [("papi_ip", 20, 1000)], family="papi", member=store.member(), hold=5.0, window=WINDOW
    )


async def test_a_flush_is_found_by_the_next_charge_and_held_here_on_the_clock(
    store: RedisStore, server: RedisServer, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    assert await charge(store) == 0.0
    with redis.Redis.from_url(server.url) as client:
        client.flushall()
        with caplog.at_level(logging.WARNING, logger="binance_pm"):
            found = await charge(store)
        client.delete("loss:pause")  # as if evicted: this process holds the pause itself

    assert 0.9 * WINDOW <= found <= WINDOW
    assert "lost its counts" in caplog.text
    assert await charge(store) == pytest.approx(found)  # the clock has not moved
    clock.now += WINDOW
    assert await charge(store) == 0.0


async def test_a_restarted_redis_pauses_the_store_a_window_from_when_it_went_away(
    store: RedisStore, server: RedisServer, clock: HandClock
) -> None:
    assert await charge(store) == 0.0
    server.stop()
    try:
        with pytest.raises(StoreError):
            await charge(store)  # at 100.0
    finally:
        server.start()  # a new server: its run id is new, its counts are gone
    clock.now = 100.4

    assert await charge(store) == pytest.approx(0.6)
    clock.now = 100.9
    assert await charge(store) == pytest.approx(0.1)
    clock.now = 101.0
    assert await charge(store) == 0.0  # the new server's missing marker is no second loss

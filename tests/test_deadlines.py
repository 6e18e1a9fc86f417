"""One timer for many calls' deadlines: a call past its deadline is cancelled into the call's
own error, anyone else's cancellation still propagates, and finished calls do not pile up."""

from __future__ import annotations

import asyncio
import sys

import pytest

from binance_pm import Session
from binance_pm._deadlines import Deadlines
from binance_pm._endpoints import PAPI_PING

from .hostile import Answer, HostileServer

# Sessions keep deadlines this way only where Task.uncancel exists; elsewhere a cancel scope.
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.uncancel is 3.11+")


async def test_a_task_past_its_deadline_is_cancelled_and_marked_expired() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    started = asyncio.Event()

    async def call() -> bool:
        task = asyncio.current_task()
        assert task is not None
        watch = deadlines.add(loop.time() + 0.05, task)
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            assert watch.expired
            task.uncancel()  # type: ignore[attr-defined,unused-ignore]
            return True
        finally:
            deadlines.done(watch)
        return False

    assert await asyncio.wait_for(call(), 5)


async def test_a_call_that_ends_in_time_is_never_cancelled() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    task = asyncio.current_task()
    assert task is not None
    watch = deadlines.add(loop.time() + 0.05, task)
    deadlines.done(watch)
    await asyncio.sleep(0.1)  # the deadline passes: the task must not be cancelled
    assert not watch.expired
    assert task.cancelling() == 0  # type: ignore[attr-defined,unused-ignore]


async def test_finished_deadlines_do_not_pile_up() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    task = asyncio.current_task()
    assert task is not None
    for _ in range(10_000):
        deadlines.done(deadlines.add(loop.time() + 3600, task))
    assert len(deadlines._heap) < 600


async def test_someone_elses_cancellation_propagates_through_a_session_call(
    scripted: HostileServer,
) -> None:
    scripted.push(Answer(stall=10))

    async with Session(base_url=scripted.url, timeout=5.0) as s:
        call = asyncio.ensure_future(s._call(PAPI_PING, [], credentials=None))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

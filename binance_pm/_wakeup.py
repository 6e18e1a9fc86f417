"""Sleeping until woken or until a time, for whoever waits in a queue (a governor's waiter, a
stream connection's ticket): the head of the queue is woken when it may look again.

Under asyncio the sleep is one future and one timer: cheaper to make and await than an
``anyio.Event`` in a cancel scope, on the governor's busiest path. Under any other event loop
(trio) it is anyio's. Either is cancelled as any await is.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import anyio


class Wakeup(Protocol):
    """What a sleeper is woken by: an ``anyio.Event``, or a :class:`FutureWakeup`."""

    def set(self) -> None: ...


class Sleeper(Protocol):
    """Whoever sleeps: its ``event``, while it sleeps, wakes it."""

    event: Wakeup | None


class FutureWakeup:
    """An asyncio future as a one-shot event."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def set(self) -> None:
        _resolve(self.future)


async def sleep_or_wake(sleeper: Sleeper, delay: float) -> None:
    """Sleep ``delay`` seconds, or until ``sleeper.event`` is set."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio, through anyio
        event = anyio.Event()
        sleeper.event = event
        with anyio.move_on_after(delay):
            await event.wait()
        return
    future: asyncio.Future[None] = loop.create_future()
    sleeper.event = FutureWakeup(future)
    timer = loop.call_later(delay, _resolve, future)
    try:
        await future
    finally:
        timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

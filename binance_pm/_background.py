"""A loop's background task under asyncio: what ``Session.stream`` and ``Session.poll(...,
stream=True)`` share. The task runs :meth:`Background._main` inside a cancel scope, puts what it
makes into a memory stream the loop reads; stopping it is a join (every wait inside is
bounded)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from typing import Generic, TypeVar

import anyio

from ._exceptions import SessionError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")


class Background(Generic[T]):
    """Subclasses set ``what`` (for errors and the task's name) and write :meth:`_main`."""

    what = "this"

    def __init__(self, buffer: int) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[T](max_buffer_size=buffer)
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.failure: BaseException | None = None  # a bug's, raised to the loop's caller
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise SessionError(f"{self.what} runs under asyncio") from None
        if self.scope.cancel_called:  # stopped (its Session closed) before it began
            self._ended()
            return
        self._task = loop.create_task(self._run(), name=f"binance_pm {self.what}")

    async def stop(self) -> None:
        """Cancel everything it does and wait for it to end: a join, whatever cancels the
        caller meanwhile (every wait inside is bounded: a socket closes within half a second,
        listen keys within the stream's ``close_within``)."""
        self.scope.cancel()
        if self._task is None:
            return  # never began: nothing to wait for
        with anyio.CancelScope(shield=True):
            await self.stopped.wait()

    def _ended(self) -> None:
        self.send.close()
        self.stopped.set()

    async def _main(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        try:
            with self.scope:
                await self._main()
        except Exception as exc:  # a bug, not an account's failure: the caller sees it
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]
            self.failure = exc
        finally:
            self._ended()


async def drain(background: Background[T]) -> AsyncGenerator[T, None]:
    """What ``background`` makes, as it comes, until it ends; then its failure, if any. Leaving
    early stops it."""
    try:
        background.start()
        async with background.receive:
            async for item in background.receive:
                yield item
        if background.failure is not None:
            raise background.failure
    finally:
        await background.stop()

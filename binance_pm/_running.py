"""The one scaffold of every poll and stream: an ``async with`` that owns its background work.

``async with session.poll(...) as updates`` (and ``session.stream``, and the merged
``poll(stream=True)``) opens a task group in the caller's own task, as trio's
``as_safe_channel`` does: the work runs in that group's one task, hands what it makes to a
memory stream the caller reads (:class:`Feed`), and leaving the ``async with`` cancels the work
and waits for it to end (a join: every wait inside is bounded by its own deadline). Nothing is
left running behind the caller, and nothing is yielded from inside a task group.

A Session's close sets one event (:class:`Owner`) that every running poll and stream watches:
each stops its work, and the close waits for all of them to end before the Session stops
sending, so that closing listen keys can still go out.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
    MemoryObjectStreamStatistics,
)

from ._exceptions import SessionError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger("binance_pm")

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Sink(Protocol[T_contra]):
    """Where work hands what it makes: at once if there is room, else by waiting."""

    def offer(self, item: T_contra) -> bool:
        """Hand ``item`` on without a checkpoint; ``False`` (nothing done) when it must wait."""
        ...

    async def put(self, item: T_contra) -> None:
        """Hand ``item`` on, waiting for room."""
        ...


class Owner:
    """A Session's running polls and streams, and the one event that tells them to stop."""

    __slots__ = ("_closing", "running")

    def __init__(self) -> None:
        self.running: set[Background[Any]] = set()
        self._closing: anyio.Event | None = None  # made in async code: anyio's needs a loop

    @property
    def closing(self) -> anyio.Event:
        if self._closing is None:
            self._closing = anyio.Event()
        return self._closing

    async def close(self) -> None:
        """Tell every running poll and stream to stop, and wait until each has (whatever
        cancels the caller meanwhile: every wait inside them is bounded)."""
        self.closing.set()
        with anyio.CancelScope(shield=True):
            for running in list(self.running):
                await running._stopped.wait()


class Channel(Generic[T]):
    """The work's end of the memory stream a :class:`Feed` reads: a :class:`Sink`."""

    __slots__ = ("_send",)

    def __init__(self, send: MemoryObjectSendStream[T]) -> None:
        self._send = send

    def offer(self, item: T) -> bool:
        """Hand ``item`` on without a checkpoint, if the buffer has room."""
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            return False
        return True

    async def put(self, item: T) -> None:
        """Hand ``item`` on, waiting for the caller to read if the buffer is full."""
        await self._send.send(item)


class Feed(Generic[T]):
    """What a running poll or stream makes, as it comes: ``async for update in updates``.

    The iteration ends when the work has ended (the Session closed, or every account's work is
    over), and raises what ended it if that was a bug rather than an account's failure. An
    update that is waiting is handed over at once, without a pass through the event loop.
    """

    __slots__ = ("_owner", "_receive")

    def __init__(self, receive: MemoryObjectReceiveStream[T], owner: Background[T]) -> None:
        self._receive = receive
        self._owner = owner

    def __aiter__(self) -> Feed[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            try:
                return await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                pass
        except (anyio.EndOfStream, anyio.ClosedResourceError):  # read after its async with
            pass
        self._owner._raise_failure()
        raise StopAsyncIteration

    def statistics(self) -> MemoryObjectStreamStatistics:
        """The memory stream's figures (updates waiting to be read, among others)."""
        return self._receive.statistics()


class Background(Generic[T]):
    """The ``async with`` that :meth:`Session.poll` and :meth:`Session.stream` return: it runs
    their work for as long as it is open, in a task group it owns, and gives a :class:`Feed`
    of what the work makes. Enter it once."""

    _what = "this"
    _needs_asyncio = False

    def __init__(self, owner: Owner, check_open: Callable[[], None], buffer: int) -> None:
        self._owner = owner
        self._check_open = check_open
        self._buffer = buffer
        self._entered = False
        self._group: TaskGroup | None = None
        self._send: MemoryObjectSendStream[T] | None = None
        self._channel: Channel[T]
        self._receive: MemoryObjectReceiveStream[T] | None = None
        self._scope: anyio.CancelScope | None = None
        self._failure: BaseException | None = None  # a bug's, raised to the caller
        self._raised = False
        self._stopped: anyio.Event

    def _stop(self) -> None:
        """Stop the work (the ``async with`` waits for it to end as it closes)."""
        if self._scope is not None:
            self._scope.cancel()

    async def _main(self) -> None:
        """The work, until it ends by itself (or is cancelled); a bug it raises ends it. Each
        kind of feed (a poll, a stream, their merge) writes its own."""
        raise NotImplementedError

    # -- the async with ------------------------------------------------------------------------

    async def __aenter__(self) -> Feed[T]:
        if self._entered:
            raise RuntimeError(f"{self._what} can be entered once; call it again for another")
        self._entered = True
        self._check_open()
        if self._needs_asyncio:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise SessionError(f"{self._what} runs under asyncio") from None
        closing = self._owner.closing
        if closing.is_set():
            raise SessionError("this Session is closing")
        self._send, self._receive = anyio.create_memory_object_stream[T](self._buffer)
        self._channel = Channel(self._send)
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        group = self._group = anyio.create_task_group()
        await group.__aenter__()
        self._owner.running.add(self)
        group.start_soon(self._run, closing, name=f"binance_pm {self._what}")
        return Feed(self._receive, self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None
        assert self._receive is not None
        self._stop()
        try:
            suppress = await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The work never raises into the group, so this holds the body's own exception
            # alone: let it go on as it was raised, not wrapped.
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return False
            raise
        finally:
            self._owner.running.discard(self)
            self._receive.close()
        if exc is None:
            self._raise_failure()
        elif self._failure is not None and not self._raised:  # the body's exception goes on
            log.error("%s ended by a failure of its own", self._what, exc_info=self._failure)
        return suppress

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            f"{self._what} is an async context manager: "
            "async with session.poll(...) as updates: async for update in updates: ..."
        )

    def _raise_failure(self) -> None:
        """Raise the work's failure, once, if it had one."""
        if self._failure is not None and not self._raised:
            self._raised = True
            raise self._failure

    async def _run(self, closing: anyio.Event) -> None:
        assert self._scope is not None
        assert self._send is not None
        try:
            with self._scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._watch, closing)
                    await self._main()
                    group.cancel_scope.cancel()  # the watch: the work has ended by itself
        except Exception as exc:  # a bug, not an account's failure: the caller sees it
            self._failed(exc)
        except BaseExceptionGroup as group:  # a bug beside a cancellation from outside
            bugs, rest = group.split(Exception)
            if bugs is not None:
                self._failed(bugs)
            if rest is not None:
                raise rest from None
        finally:
            self._send.close()
            self._stopped.set()

    def _failed(self, exc: BaseException) -> None:
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]  # the first is raised to the caller
        if self._failure is None:
            self._failure = exc
        else:  # the caller sees the first; this one is told here, not lost
            log.error("%s: a second failure", self._what, exc_info=exc)

    async def _watch(self, closing: anyio.Event) -> None:
        await closing.wait()
        self._stop()

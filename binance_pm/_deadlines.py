"""The deadlines of many calls under asyncio, kept by one timer instead of one each.

``asyncio.timeout`` arms a timer per call and wraps it in an object with its own state; for a
call that costs about 150 µs of CPU in all, that is a few per cent. :class:`Deadlines` keeps one
heap of deadlines per event loop and one timer armed at the earliest: a call adds its deadline
(a tuple pushed onto a heap) and marks it done when it ends. When a deadline passes while its
call still runs, the call's task is cancelled, exactly as ``asyncio.timeout`` does it, and the
call tells its own cancellation from anyone else's with ``Task.uncancel`` (Python 3.11+).

Finished calls' deadlines stay on the heap until they come up or until more than half the heap
is finished, when it is rebuilt without them, as asyncio does with its cancelled timers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

#: Entries on the heap before a rebuild is worth its cost.
_REBUILD_AT = 256


class Deadline:
    """One call's deadline: its task while it runs (``None`` once done), and whether it passed."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task: asyncio.Task[object] | None = task
        self.expired = False


class Deadlines:
    """Every deadline of one event loop's calls, and the one timer armed at the earliest."""

    __slots__ = ("_done", "_heap", "_loop", "_seq", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._done = 0

    def add(self, when: float, task: asyncio.Task[object]) -> Deadline:
        """Cancel ``task`` at ``when`` (loop time) unless :meth:`done` comes first."""
        deadline = Deadline(task)
        heapq.heappush(self._heap, (when, next(self._seq), deadline))
        if self._timer is None or when < self._timer_at:
            self._arm(when)
        return deadline

    def done(self, deadline: Deadline) -> None:
        """The call ended: its deadline no longer matters."""
        if deadline.task is None:
            return  # it expired, and left the heap then
        deadline.task = None
        self._done += 1
        heap = self._heap
        if self._done > _REBUILD_AT and self._done * 2 > len(heap):
            self._heap = [entry for entry in heap if entry[2].task is not None]
            heapq.heapify(self._heap)
            self._done = 0
            if not self._heap and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            deadline = heapq.heappop(heap)[2]
            task = deadline.task
            if task is None:
                self._done -= 1
                continue
            deadline.expired = True
            deadline.task = None
            task.cancel()
        if heap:
            self._arm(heap[0][0])

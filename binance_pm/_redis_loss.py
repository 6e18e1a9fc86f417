"""How a process on the Redis store notices that the counts were lost, and holds its charges.

Redis loses the counts in two ways. It can drop keys while it runs (``FLUSHALL``, ``FLUSHDB``,
eviction): a marker key, read by the charge script in the same step as the charge, tells; its
loss, or another marker than the one this process saw last, means the counts went with it, and
the script sets a pause key that holds every process. Or the server restarts: after a failure,
the store asks the server's run id, and a new one means a new server, empty.

Either way nothing is charged until what was sent before can no longer count at the exchange:
one window after the loss was seen (or after the longest 429 or 418 known here), or one window
after a restarted server went away. :class:`LossDetector` keeps what this process knows of it
on an injected monotonic clock and does no I/O: the store tells it what Redis answered.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

#: How long the marker outlives the last charge: it tells a flush from a fleet long idle.
MARKER_LIFE = 86_400.0


class Why(enum.IntEnum):
    """Why the charge script charged nothing (as it returns it)."""

    ROOM = 0  # no room: other requests fill a budget
    SHUT = 1  # a 429 shuts a budget, or a 418 bans the family
    PAUSED = 2  # a pause after lost counts
    LOST = 3  # the same, the loss found by this very charge


class LossDetector:
    """What this process knows of lost counts: the marker and the server's run id it saw
    last, when the store began failing, and until when nothing is charged.

    Args:
        clock: a monotonic clock in seconds (``time.monotonic``; tests pass one they move).
    """

    __slots__ = ("_clock", "_failed_at", "_paused_until", "_run_id", "_shut_until", "marker")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.marker = ""  # the marker last seen: another, or none, means the counts were lost
        self._run_id: str | None = None  # the server's, to tell a restart
        self._failed_at: float | None = None  # the first failure in a row
        self._paused_until = 0.0  # after lost counts nothing is charged before this
        self._shut_until = 0.0  # the longest 429 shut or 418 ban known here ends

    def paused_for(self) -> float:
        """Seconds until charges may go again (0.0: now)."""
        return max(self._paused_until - self._clock(), 0.0)

    @property
    def must_ask_server(self) -> bool:
        """Whether to learn the server's run id before the next charge: none known yet, or
        the store failed since (Redis may have restarted)."""
        return self._run_id is None or self._failed_at is not None

    def server(self, run_id: str, *, window: float) -> None:
        """The server's run id, asked after :attr:`must_ask_server`. Another than before a
        failure means a restart, with its counts: nothing is charged until one window after
        the failure began."""
        if self._run_id is not None and run_id != self._run_id and self._failed_at is not None:
            self._paused_until = max(self._paused_until, self._failed_at + window)
            self.marker = ""  # the restart explains the lost marker: its pause is enough
        self._run_id = run_id
        self._failed_at = None

    def failed(self) -> None:
        """A round trip to the store failed (the first of a row is remembered)."""
        if self._failed_at is None:
            self._failed_at = self._clock()

    def shut(self, seconds: float) -> None:
        """A 429 or 418 known here shuts something for ``seconds`` from now."""
        self._shut_until = max(self._shut_until, self._clock() + seconds)

    def pause_for_loss(self, window: float) -> float:
        """Seconds a loss found now would pause every process: one window, or until the
        longest 429 or 418 known here ends (its key may have gone with the counts)."""
        return max(window, self._shut_until - self._clock())

    def answer(self, marker: str, why: Why, wait: float) -> None:
        """What a charge answered: the marker it saw, and, when it charged nothing, why, and
        ``wait`` seconds until it is worth asking again."""
        self.marker = marker
        if why is Why.SHUT:
            self.shut(wait)
        elif why in (Why.PAUSED, Why.LOST):  # held here too, should the pause key go as well
            self._paused_until = max(self._paused_until, self._clock() + wait)

    def __repr__(self) -> str:
        failing = "" if self._failed_at is None else ", failing"
        return f"LossDetector(marker={self.marker!r}, paused_for={self.paused_for():.3g}{failing})"

"""The simulated exchange's rate limits: weight counters, 429s, and bans for those who ignore them.

Weight is counted on the server's clock when a request arrives, whatever its answer. A counter
is either a fixed window aligned to the clock (reset to zero at every multiple of ``window``, as
documented for spot) or a sliding one (the weight of the last ``window`` seconds). A request that
would take a counter past its limit gets a 429 with ``Retry-After``; one that arrives for the same
budget before that time is up earns an IP ban (418) for that API family, twice as long each time;
except for the few requests that were already on their way when the 429 was sent: within a short
grace after it, up to a count of them get 429s too. A client that keeps sending is banned within
a few requests, however quickly it sends them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Literal

WindowMode = Literal["fixed", "sliding"]
SapiScope = Literal["family", "endpoint"]


class Counter:
    """The weight counted against one limit."""

    __slots__ = (
        "_entries",
        "_external",
        "_index",
        "_started_ms",
        "_sum",
        "limit",
        "mode",
        "window_ms",
    )

    def __init__(
        self,
        limit: int,
        window_ms: float,
        mode: WindowMode,
        *,
        external: float = 0.0,
        started_ms: float = 0.0,
    ) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.mode = mode
        self._external = external
        self._started_ms = started_ms
        self._index = -1
        self._sum = 0
        self._entries: deque[tuple[float, int]] = deque()

    def _expire(self, now_ms: float) -> None:
        if self.mode == "fixed":
            index = int(now_ms // self.window_ms)
            if index != self._index:
                self._index = index
                self._sum = 0
        else:
            horizon = now_ms - self.window_ms
            entries = self._entries
            while entries and entries[0][0] <= horizon:
                self._sum -= entries.popleft()[1]

    def phantom(self, now_ms: float) -> int:
        """Weight spent by "another process on the same IP", spread evenly over each window."""
        if not self._external:
            return 0
        if self.mode == "fixed":
            fraction = (now_ms % self.window_ms) / self.window_ms
        else:
            fraction = min(1.0, max(0.0, now_ms - self._started_ms) / self.window_ms)
        return int(self._external * self.limit * fraction)

    def used(self, now_ms: float) -> int:
        """The weight counted in the window that holds ``now_ms``, phantom weight included."""
        self._expire(now_ms)
        return self._sum + self.phantom(now_ms)

    def fits(self, weight: int, now_ms: float) -> bool:
        return self.used(now_ms) + weight <= self.limit

    def charge(self, weight: int, now_ms: float) -> int:
        """Count ``weight`` at ``now_ms``; returns the weight used now (phantom included)."""
        self._expire(now_ms)
        self._sum += weight
        if self.mode == "sliding":
            self._entries.append((now_ms, weight))
        return self._sum + self.phantom(now_ms)

    def seconds_until_fits(self, weight: int, now_ms: float) -> float:
        """How long until ``weight`` more would fit (at least until the window turns)."""
        self._expire(now_ms)
        if self.mode == "fixed":
            return (self.window_ms - now_ms % self.window_ms) / 1000.0
        excess = self._sum + self.phantom(now_ms) + weight - self.limit
        wait_until = now_ms
        for at, entry_weight in self._entries:
            wait_until = at + self.window_ms
            excess -= entry_weight
            if excess <= 0:
                break
        else:
            wait_until = now_ms + self.window_ms
        return max(wait_until - now_ms, 1.0) / 1000.0


class Warden:
    """Remembers 429s and bans per API family, and escalates repeated violations."""

    __slots__ = (
        "_ban_count",
        "_banned_until",
        "_cooling_until",
        "_grace_left",
        "_grace_until",
        "ban_seconds",
        "grace",
        "grace_requests",
    )

    def __init__(self, ban_seconds: float, grace: float = 0.0, grace_requests: int = 5) -> None:
        self.ban_seconds = ban_seconds
        self.grace = grace
        self.grace_requests = grace_requests
        self._cooling_until: dict[str, float] = {}
        self._grace_until: dict[str, float] = {}
        self._grace_left: dict[str, int] = {}
        self._banned_until: dict[str, float] = {}
        self._ban_count: dict[str, int] = {}

    def banned_until(self, family: str, now_ms: float) -> float | None:
        until = self._banned_until.get(family)
        return until if until is not None and until > now_ms else None

    def in_cooldown(self, key: str, now_ms: float) -> bool:
        """True when a request refused for ``key`` (a budget) earns a ban: the budget got a
        429 whose Retry-After has not yet passed, and the grace for requests already on their
        way is over (its time, or its count: this request is counted against it)."""
        if now_ms >= self._cooling_until.get(key, 0.0):
            return False
        left = self._grace_left.get(key, 0)
        if now_ms < self._grace_until.get(key, 0.0) and left > 0:
            self._grace_left[key] = left - 1
            return False
        return True

    def refused(self, key: str, now_ms: float, retry_after: float) -> None:
        """A 429 was sent for ``key``; it must wait ``retry_after`` seconds."""
        if not self._cooling_until.get(key, 0.0) > now_ms:  # a new refusal, not one in grace
            self._grace_until[key] = now_ms + self.grace * 1000.0
            self._grace_left[key] = self.grace_requests
        self._cooling_until[key] = now_ms + retry_after * 1000.0

    def ban_all(self, families: Iterable[str], now_ms: float) -> float:
        """Ban every one of ``families`` (an IP ban) until the longest ban any of them has
        earned; returns its end in ms."""
        names = list(families)
        until = max(self.ban(family, now_ms) for family in names)
        for family in names:
            self._banned_until[family] = until
        return until

    def ban(self, family: str, now_ms: float) -> float:
        """Ban ``family`` for the next ban length; returns the end of the ban in ms."""
        count = self._ban_count.get(family, 0)
        self._ban_count[family] = count + 1
        until: float = now_ms + self.ban_seconds * 1000.0 * 2.0**count
        self._banned_until[family] = until
        return until


def retry_after_text(seconds: float) -> str:
    """``Retry-After`` in seconds, rounded up to the millisecond (whole seconds where exact)."""
    return f"{math.ceil(seconds * 1000) / 1000:g}"

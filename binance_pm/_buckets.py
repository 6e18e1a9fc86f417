"""One rate-limit budget: the weight it holds, and until when.

A request's weight is held from the moment it is let out until one window after its answer came
back (or its failure was seen). The exchange counts a request when it arrives, which is somewhere
between those two moments; holding it that long keeps *every* interval of one window, wherever
the exchange's clock puts it, at or under the limit, and so is safe whether the exchange counts in
fixed windows or sliding ones:

    For an interval [s, s+W) at the exchange, let k be the last request let out among those that
    arrived in it. Any other such request j arrived at or after s, so its answer came back at
    r_j >= s > g_k - W: it was still held when k was let out, and k was let out only if all of
    them fit under the limit.

Finished requests are kept as (expiry, weight) in the order they finished, so expiries only grow
and expiring them is a pop from the front: O(1) per request, whatever the window holds.
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._governor import Waiter


class Bucket:
    """The held weight of one budget (an API family's IP weight, or an account's UID weight)."""

    __slots__ = (
        "_expiries",
        "_head",
        "_weights",
        "answered",
        "cautious_until",
        "closed_until",
        "external",
        "external_until",
        "family",
        "gone_total",
        "held",
        "inflight",
        "limit",
        "name",
        "rejections",
        "waiters",
        "window",
    )

    def __init__(self, name: str, family: str, limit: int, window: float) -> None:
        self.name = name
        self.family = family
        self.limit = limit
        self.window = window
        self.held = 0  # weight of finished requests not yet expired
        self.inflight = 0  # weight let out whose answer has not come
        self.external = 0  # weight the exchange reports beyond ours (another process, say)
        self.external_until = 0.0  # unless an answer says it again, external weight lapses then
        self.gone_total = 0  # all weight ever expired or given back
        self.answered = False  # an answer came: until then, one request at a time
        self.cautious_until = 0.0  # after a 429: estimates of outside weight only go up
        self.closed_until = 0.0  # after a 429: nothing goes out before this
        self.rejections = 0  # 429s seen
        self.waiters: deque[Waiter] | None = None  # made on first wait: most buckets never wait
        # Arrays, not lists: 16 bytes a held request instead of 40, for thousands of accounts.
        self._expiries = array("d")
        self._weights = array("q")
        self._head = 0

    def expire(self, now: float) -> None:
        expiries = self._expiries
        head = self._head
        if head < len(expiries) and expiries[head] <= now:
            weights = self._weights
            freed = 0
            while head < len(expiries) and expiries[head] <= now:
                freed += weights[head]
                head += 1
            self.held -= freed
            self.gone_total += freed
            if head > 64 and head * 2 > len(expiries):
                del expiries[:head]
                del weights[:head]
                head = 0
            self._head = head

    def used(self, now: float) -> int:
        """Weight counted against the limit now: held, in flight, and reported from outside."""
        self.expire(now)
        if self.external and now >= self.external_until:
            self.external = 0
        return self.held + self.inflight + self.external

    def report(self, external: int, now: float, until: float) -> None:
        """The exchange counts ``external`` weight beyond ours: hold it until ``until``.

        Each answer's estimate replaces the last, except for a window after a 429, when the
        bucket is at the limit and a low estimate (a request overtaken by a later one) would
        send it into the next 429: then only a higher estimate replaces a lower one.
        """
        external = max(0, external)
        if now < self.cautious_until and now < self.external_until:
            external = max(external, self.external)
        self.external = external
        self.external_until = until

    def finish(self, weight: int, now: float) -> None:
        """A request let out has finished: hold its weight one more window."""
        self.inflight -= weight
        self._expiries.append(now + self.window)
        self._weights.append(weight)
        self.held += weight

    def time_until_room(self, weight: int, now: float) -> float | None:
        """When ``weight`` more fits as expiries alone free it; ``None`` if they cannot."""
        needed = self.used(now) + weight - self.limit
        if needed <= 0:
            return now
        # Reported external weight lapses too, at its own time, between the expiries.
        external = self.external
        expiries, weights = self._expiries, self._weights
        for i in range(self._head, len(expiries)):
            if external and self.external_until <= expiries[i]:
                needed -= external
                external = 0
                if needed <= 0:
                    return self.external_until
            needed -= weights[i]
            if needed <= 0:
                return expiries[i]
        if external and needed - external <= 0:
            return self.external_until
        return None

    def resets_at(self, now: float) -> float:
        """When everything held now will have expired (in-flight weight aside)."""
        self.expire(now)
        return self._expiries[-1] if self._head < len(self._expiries) else now

    def head(self) -> Waiter | None:
        return self.waiters[0] if self.waiters else None

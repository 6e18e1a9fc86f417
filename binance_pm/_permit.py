"""What a call gets from the governor: a :class:`LocalPermit` to go, or the error that says why
it cannot go before its deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ._buckets import Bucket
from ._endpoints import Endpoint
from ._exceptions import BinancePMError, GovernorTimeout, IPBannedError, RateLimitError, mask_key
from ._learning import Marks, reports_ip_too


class Books(Protocol):
    """What a permit needs of its governor's ledger (``_ledger.Ledger``): public methods only."""

    clock: Callable[[], float]

    def ip_of(self, endpoint: Endpoint[Any]) -> Bucket: ...

    def learn(self, permit: LocalPermit, headers: Mapping[str, str], now: float) -> None: ...

    def refused(
        self, permit: LocalPermit, status: int, headers: Mapping[str, str] | None, now: float
    ) -> None: ...


class LocalPermit:
    """Weight reserved in this process for one request (a :class:`~binance_pm.Permit`)."""

    __slots__ = ("_done", "_ledger", "_marks", "account", "buckets", "endpoint", "weights")

    def __init__(
        self,
        ledger: Books,
        endpoint: Endpoint[Any],
        account: str,
        buckets: tuple[Bucket, ...],
        weights: tuple[int, ...],
        marks: tuple[int, ...],
    ) -> None:
        self._ledger = ledger
        self.endpoint = endpoint
        self.account = account
        self.buckets = buckets
        self.weights = weights
        # The marks of each budget the answer reports on (the permit's own, and the IP budget
        # of a UID call that took none), three ints each, flat (``Bucket.take``); the second
        # budget's are followed by its count of UID calls let out.
        self._marks = marks
        self._done = False

    def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        for bucket, weight in zip(self.buckets, self.weights, strict=True):
            bucket.give_back(weight)
        for bucket in self.buckets:
            bucket.wake()

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        if self._done:
            return
        self._done = True
        ledger = self._ledger
        now = ledger.clock()
        buckets = self.buckets
        answered = status is not None
        for bucket, weight in zip(buckets, self.weights, strict=False):  # pairs by making
            bucket.finish(weight, now, answered)
        if headers is not None:
            ledger.learn(self, headers, now)
        if status == 429 or status == 418:
            ledger.refused(self, status, headers, now)
        for bucket in buckets:
            if bucket.waiters:  # the next in line looks again
                bucket.wake()

    async def settle(self) -> None:
        """Nothing to tell: this process alone counts it."""

    @property
    def uid_calls(self) -> int:
        """For a UID call that took no IP weight: the IP budget's UID calls let out by then."""
        return self._marks[-1]

    def reported(self) -> list[tuple[Bucket, int, Marks]]:
        """The budgets the answer reports on, each with the weight it took and its marks."""
        buckets, weights, flat = self.buckets, self.weights, self._marks
        if reports_ip_too(self.endpoint, len(buckets)):
            buckets, weights = (*buckets, self._ledger.ip_of(self.endpoint)), (*weights, 0)
        first = (buckets[0], weights[0], Marks(flat[0], flat[1], flat[2]))
        if len(buckets) == 1:
            return [first]
        return [first, (buckets[1], weights[1], Marks(flat[3], flat[4], flat[5]))]


def too_late(
    endpoint: Endpoint[Any],
    account: str,
    buckets: tuple[Bucket, ...],
    banned_until: Mapping[str, float],
    now: float,
    wake_at: float | None,
) -> BinancePMError:
    """The error for a call the governor cannot let out before its deadline: the exchange's
    ban or 429 while one holds a budget shut, else :class:`GovernorTimeout`."""
    masked = mask_key(account) if account else None
    for bucket in buckets:
        banned = banned_until[bucket.family] - now
        if banned > 0:
            until_ms = int((time.time() + banned) * 1000)
            return IPBannedError(
                418,
                -1003,
                f"the {bucket.family} IP is banned until {until_ms}; the call's deadline "
                "comes first",
                endpoint=endpoint.label,
                api_key=masked,
                retry_after=banned,
            )
        if bucket.closed_until > now:
            return RateLimitError(
                429,
                -1003,
                f"the exchange answered 429 for {bucket.name}; it reopens in "
                f"{bucket.closed_until - now:.3f} s, after the call's deadline",
                endpoint=endpoint.label,
                api_key=masked,
                retry_after=bucket.closed_until - now,
            )
    return GovernorTimeout(
        f"no room in the rate-limit budget ({', '.join(b.name for b in buckets)}) "
        "before the call's deadline",
        endpoint=endpoint.label,
        api_key=masked,
        retry_after=None if wake_at is None else wake_at - now,
    )

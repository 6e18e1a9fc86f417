"""The exchange's clock, as seen from here: local wall time plus a measured offset.

Signed requests carry ``timestamp`` in exchange-clock milliseconds; the exchange refuses one that
is 1,000 ms ahead of it or older than ``recvWindow``. The offset is measured against a time
endpoint: each sample takes the midpoint of its round trip as the moment the server read its
clock, and the sample with the shortest round trip (the least room for error) wins.

One clock serves every client of a Session. It is measured lazily before the first signed request,
re-measured when older than ``refresh_interval`` (by the request that notices; the others go on
with the old offset meanwhile), and on demand after a ``-1021``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio

from ._exceptions import BinancePMError, DecodeError

log = logging.getLogger("binance_pm")

FetchServerTime = Callable[[], Awaitable[int]]
#: A server time outside these (July 2017 to 2100, in ms) is not the exchange's clock: the
#: measurement fails and the last good offset stays.
PLAUSIBLE_MS = (1_500_000_000_000, 4_102_444_800_000)


class ExchangeClock:
    """Exchange time in milliseconds, from the local clock and a measured offset.

    Args:
        samples: round trips per measurement.
        refresh_interval: seconds after which the offset is measured again.
        wall: the local wall clock in seconds (``time.time``); tests pass their own.
    """

    __slots__ = (
        "_lock",
        "_measured_at",
        "generation",
        "offset_ms",
        "refresh_interval",
        "rtt_ms",
        "samples",
        "wall",
    )

    def __init__(
        self,
        *,
        samples: int = 3,
        refresh_interval: float = 300.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if samples < 1:
            raise ValueError("samples must be at least 1")
        self.samples = samples
        self.refresh_interval = refresh_interval
        self.wall = wall
        self.offset_ms: float | None = None
        self.rtt_ms: float | None = None
        #: Bumped by every measurement, so callers can tell whether one happened since they looked.
        self.generation = 0
        self._measured_at = 0.0
        self._lock = anyio.Lock()

    def now_ms(self) -> int:
        """Exchange time now, in integer milliseconds (local time until the first measurement)."""
        return int(self.wall() * 1000.0 + (self.offset_ms or 0.0))

    def stale(self) -> bool:
        """Whether :meth:`ensure` has anything to do: never measured, or due for a refresh."""
        return self.offset_ms is None or self.wall() - self._measured_at > self.refresh_interval

    async def ensure(self, fetch: FetchServerTime) -> None:
        """Measure if never measured; re-measure if stale, unless another task already is."""
        if self.offset_ms is None:
            await self.resync(fetch, seen=self.generation)
        elif self.wall() - self._measured_at > self.refresh_interval and not self._lock.locked():
            try:
                await self.resync(fetch, seen=self.generation)
            except BinancePMError as exc:
                # A stale offset is still a good offset; keep it and try again next time.
                log.warning("could not refresh the exchange clock offset: %s", exc)

    async def resync(self, fetch: FetchServerTime, *, seen: int) -> None:
        """Measure the offset again, unless it was measured since generation ``seen``."""
        async with self._lock:
            if self.generation != seen:
                return
            best_rtt = best_offset = None
            for _ in range(self.samples):
                sent = self.wall()
                server_ms = await fetch()
                received = self.wall()
                if not PLAUSIBLE_MS[0] <= server_ms <= PLAUSIBLE_MS[1]:
                    raise DecodeError(
                        f"serverTime {str(server_ms)[:20]} is not a plausible time in ms",
                        endpoint="GET /api/v3/time",
                        path="$.serverTime",
                    )
                rtt = (received - sent) * 1000.0
                if best_rtt is None or rtt < best_rtt:
                    best_rtt = rtt
                    best_offset = server_ms - (sent + received) * 500.0
            self.offset_ms = best_offset
            self.rtt_ms = best_rtt
            self._measured_at = self.wall()
            self.generation += 1
            log.debug("exchange clock offset %.1f ms (round trip %.1f ms)", best_offset, best_rtt)

    def __repr__(self) -> str:
        if self.offset_ms is None:
            return "ExchangeClock(unmeasured)"
        return f"ExchangeClock(offset_ms={self.offset_ms:.1f}, rtt_ms={self.rtt_ms:.1f})"

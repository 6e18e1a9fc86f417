"""One rate-limit budget for many processes: the governor's counts in Redis.

::

    from binance_pm import Governor
    from binance_pm.redis import RedisStore

    gov = Governor(store=RedisStore("redis://127.0.0.1:6379/0", prefix="binance_pm"))

Needs the ``redis`` extra (``pip install -e '.[redis]'`` in a checkout); the core SDK never imports
this module. Every process that passes a store with the same Redis and prefix shares every
budget: the exchange counts the IP weight of all of them as one.

Each budget is a sorted set of the requests it holds, scored by when they stop counting, and a
running total. An acquire is one round trip: a Lua script, run atomically by Redis on Redis's own
clock, that drops what has expired, checks every budget the call needs, and charges all of them
or none. A request counts from its grant until one window after its answer (the answer moves
its score there), as in process; one whose answer never reaches Redis (its process died, or
Redis was down) stops counting at its grant plus the call's deadline plus one window. Outside
weight learned from the answers' headers, a 429's ``Retry-After`` and a 418's ban are keys with
that lifetime, seen by every process. A waiter that keeps failing claims the room it needs, so
a stream of lighter calls from other processes cannot starve it. Every key has a lifetime:
nothing grows without bound.

Member names and keys hold no API key: UID budgets are named by a hash of it.

The scripts are files of their own (``_redis_lua/*.lua``, each saying which keys and arguments
it takes), every key's name is built by ``_redis_keys.KeyLayout``, and what this process knows
of lost counts is kept by ``_redis_loss.LossDetector``; this module does the round trips.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ._hook import SharedCount, StoreError
from ._redis_keys import KeyLayout
from ._redis_loss import MARKER_LIFE, LossDetector, Why

__all__ = ["RedisStore", "StoreError"]

log = logging.getLogger("binance_pm")


def _script(name: str) -> str:
    """The Lua script ``name``, from the package's ``_redis_lua`` folder (its header says
    which keys and arguments it takes, and what it returns)."""
    folder = resources.files(__name__.rpartition(".")[0]) / "_redis_lua"
    return (folder / f"{name}.lua").read_text("utf-8")


def _connect(url: str, timeout: float) -> aioredis.Redis:
    """A client of the Redis at ``url`` whose every round trip, and every connection made,
    gives up after ``timeout`` seconds."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )


_CHARGE, _FINISH, _CANCEL, _READ = (_script(n) for n in ("charge", "finish", "cancel", "read"))


class RedisStore:
    """The budgets of every process that uses the same Redis and ``prefix``.

    Args:
        url: a Redis URL (``redis://host:port/db``, ``rediss://`` for TLS, ``unix://``).
        prefix: the start of every key this store writes.
        timeout: seconds one round trip may take before it counts as a failure.
        client: a ``redis.asyncio.Redis`` to use instead of ``url`` (closed by its owner).
        clock: the monotonic clock this process's own pauses are kept on (for tests).
        egress: the IP address this process sends from, when the processes sharing the store
            send from several (``Session(source_address=...)``): IP budgets and bans are then
            each egress's own, UID budgets the account's whichever sends.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "binance_pm",
        timeout: float = 1.0,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
        egress: str | None = None,
    ) -> None:
        self._keys = KeyLayout(prefix, egress)  # refuses a prefix that is not one word
        self.egress = egress
        self.prefix = prefix
        self._owns = client is None
        self._redis: aioredis.Redis = client or _connect(url, timeout)
        self._charge = self._redis.register_script(_CHARGE)
        self._finish = self._redis.register_script(_FINISH)
        self._cancel = self._redis.register_script(_CANCEL)
        self._read = self._redis.register_script(_READ)
        self._token = secrets.token_hex(6)  # this process's members: never two alike
        self._loss = LossDetector(clock)
        self._count = 0
        self._url = url if client is None else "(given client)"

    def member(self) -> str:
        """A name for one request, unique across processes."""
        self._count += 1
        return f"{self._token}-{self._count}"

    async def charge(
        self,
        budgets: Sequence[tuple[str, int, int]],
        *,
        family: str,
        member: str,
        hold: float,
        window: float,
    ) -> float:
        """Charge ``(name, weight, limit)`` budgets all together, or none: 0.0 when charged,
        else the seconds until it is worth asking again.

        Counts can be lost while Redis runs (``FLUSHALL``, ``FLUSHDB``, eviction): a marker
        key, checked in the same script as the charge, tells. Its loss, or another marker than
        the one this process saw last, means the counts went with it; then nothing is charged,
        in any process, until one window after (or after the longest 429 or 418 known here):
        by then nothing sent before can still count at the exchange. A process that meets no
        marker on its first charge cannot tell a first start from a flush, and starts at once.

        After Redis was unreachable, if it came back as a new server (restarted, its counts
        lost), nothing is charged until one window after it went away.
        """
        loss = self._loss
        paused = loss.paused_for()
        if paused > 0:
            return paused
        if loss.must_ask_server:
            try:
                info = await self._redis.info("server")
            except (RedisError, OSError) as exc:
                raise self._failed(exc) from None
            loss.server(str(info.get("run_id", "")), window=window)
            paused = loss.paused_for()
            if paused > 0:
                return paused
        argv: list[Any] = [
            len(budgets),
            member,
            int(hold * 1000),
            int(window * 1000),
            loss.marker,
            secrets.token_hex(8),
            math.ceil(loss.pause_for_loss(window) * 1000),
            int(MARKER_LIFE * 1000),
        ]
        for _, weight, limit in budgets:
            argv += [weight, limit]
        keys = self._keys.charge([name for name, _, _ in budgets], family=family)
        try:
            granted, wait_ms, marker, why = await self._charge(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        wait = 0.0 if int(granted) == 1 else max(int(wait_ms), 1) / 1000
        found = Why(int(why))
        loss.answer(marker.decode() if isinstance(marker, bytes) else str(marker), found, wait)
        if found is Why.LOST:
            log.warning(
                "the rate-limit store lost its counts (flushed or evicted): nothing is "
                "charged for %.3g s, until what was sent before has left the window",
                wait,
            )
        return wait

    def _failed(self, exc: BaseException) -> StoreError:
        self._loss.failed()
        return StoreError(f"{type(exc).__name__}: {exc}")

    async def finish(
        self,
        budgets: Sequence[tuple[str, int, int | None, bool]],
        *,
        family: str,
        member: str,
        window: float,
        shut: float,
        ban: float,
    ) -> None:
        """A request's answer: ``(name, weight, reported used weight or None, shut by this
        429)`` per budget it reports on; ``shut`` and ``ban`` in seconds (0: none)."""
        argv: list[Any] = [
            len(budgets),
            member,
            int(window * 1000),
            int(shut * 1000),
            int(ban * 1000),
        ]
        for _, weight, reported, shuts in budgets:
            argv += [weight, -1 if reported is None else reported, 1 if shuts else 0]
        keys = self._keys.finish([name for name, _, _, _ in budgets], family=family)
        if shut or ban:
            self._loss.shut(max(shut, ban))
        try:
            await self._finish(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None

    async def cancel(self, budgets: Sequence[tuple[str, int]], *, member: str) -> None:
        """A request that never left: give its weight back."""
        keys = self._keys.cancel([name for name, _ in budgets])
        argv: list[Any] = [len(budgets), member, *(weight for _, weight in budgets)]
        try:
            await self._cancel(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None

    async def read(
        self, budgets: Sequence[str], *, families: Sequence[str]
    ) -> tuple[list[SharedCount], dict[str, float]]:
        """What the store holds now for each of ``budgets`` (as :meth:`charge` names them), and
        each family's ban in seconds (0: none); a pause after lost counts shuts every budget."""
        keys = self._keys.read(budgets, families=families)
        try:
            values = [int(v) for v in await self._read(keys=keys, args=[len(budgets)])]
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        n = len(budgets)
        paused = max(values[4 * n], self._loss.paused_for() * 1000)
        counts = [
            SharedCount(
                held=values[4 * i],
                external=values[4 * i + 1],
                resets_in=max(0, values[4 * i + 2]) / 1000,
                closed_for=max(values[4 * i + 3], paused) / 1000,
            )
            for i in range(n)
        ]
        bans = {f: values[4 * n + 1 + j] / 1000 for j, f in enumerate(families)}
        return counts, bans

    async def aclose(self) -> None:
        """Close the connections to Redis (not those of a ``client`` passed in)."""
        if self._owns:
            await self._redis.aclose()

    def __repr__(self) -> str:
        url = self._url.split("@")[-1]  # no password
        at = "" if self.egress is None else f", egress={self.egress!r}"
        return f"RedisStore({url}, prefix={self.prefix!r}{at})"

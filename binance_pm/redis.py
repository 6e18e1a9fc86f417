"""One rate-limit budget for many processes: the governor's counts in Redis.

::

    from binance_pm import Governor
    from binance_pm.redis import RedisStore

    gov = Governor(store=RedisStore("redis://127.0.0.1:6379/0", prefix="binance_pm"))

Needs the ``redis`` extra (``pip install 'binance-pm[redis]'``); the core SDK never imports
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
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ._hook import SharedCount, StoreError

__all__ = ["RedisStore", "StoreError"]

log = logging.getLogger("binance_pm")

# KEYS: per budget its set, total, outside weight, shut-until and claim keys (5 each), then the
# marker, the pause key and the family's ban key. ARGV: budgets n, member, hold ms, claim ms,
# the marker this process last saw ('' for none), a new marker, the pause ms a loss calls for,
# the marker's lifetime ms, then per budget weight and limit.
# Returns {1 charged | 0, wait ms, the marker, why it waits: 0 room, 1 a 429 or 418,
# 2 a pause after lost counts, 3 the same, found lost by this call}.
_CHARGE = """
local n = tonumber(ARGV[1])
local member = ARGV[2]
local hold = tonumber(ARGV[3])
local claim_ms = tonumber(ARGV[4])
local known = ARGV[5]
local pause_ms = tonumber(ARGV[7])
local marker, pause, ban = KEYS[5*n+1], KEYS[5*n+2], KEYS[5*n+3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('GET', marker)
local lost = false
if epoch then
  lost = known ~= '' and epoch ~= known
else
  epoch = ARGV[6]
  redis.call('SET', marker, epoch)
  lost = known ~= ''
end
redis.call('PEXPIRE', marker, tonumber(ARGV[8]))
if lost and redis.call('PTTL', pause) < pause_ms then
  redis.call('SET', pause, '1', 'PX', pause_ms)
end
local paused = redis.call('PTTL', pause)
if paused > 0 then return {0, paused, epoch, lost and 3 or 2} end
local banned = redis.call('PTTL', ban)
if banned > 0 then return {0, banned, epoch, 1} end
local wait = 0
local shut_wait = 0
for i = 1, n do
  local z, s, e, c, k = KEYS[5*i-4], KEYS[5*i-3], KEYS[5*i-2], KEYS[5*i-1], KEYS[5*i]
  local w = tonumber(ARGV[7 + 2*i])
  local limit = tonumber(ARGV[8 + 2*i])
  local shut = redis.call('PTTL', c)
  if shut > 0 then shut_wait = math.max(shut_wait, shut) end
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #gone > 0 then
    local freed = 0
    for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    redis.call('DECRBY', s, freed)
  end
  local used = tonumber(redis.call('GET', s) or '0') + tonumber(redis.call('GET', e) or '0')
  local claim = redis.call('GET', k)
  if claim then
    local who, cw = string.match(claim, '^(.*):(%d+)$')
    if who ~= member then used = used + tonumber(cw) end
  end
  if used + w > limit then
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    local room_in = 50
    if #first > 0 then room_in = math.max(1, math.min(tonumber(first[2]) - now, 50)) end
    wait = math.max(wait, room_in)
    if not claim then redis.call('SET', k, member .. ':' .. w, 'PX', claim_ms) end
  end
end
if shut_wait >= wait and shut_wait > 0 then return {0, shut_wait, epoch, 1} end
if wait > 0 then return {0, wait, epoch, 0} end
for i = 1, n do
  local z, s, k = KEYS[5*i-4], KEYS[5*i-3], KEYS[5*i]
  local w = tonumber(ARGV[7 + 2*i])
  redis.call('ZADD', z, now + hold, member .. ':' .. w)
  redis.call('INCRBY', s, w)
  redis.call('PEXPIRE', z, hold)
  redis.call('PEXPIRE', s, hold)
  local claim = redis.call('GET', k)
  if claim and string.match(claim, '^(.*):%d+$') == member then redis.call('DEL', k) end
end
return {1, 0, epoch, 0}
"""

# KEYS: per budget its set, total, outside weight and shut-until keys (4 each), then the
# family's ban key. ARGV: budgets n, member, window ms, shut ms (429), ban ms (418), then per
# budget weight, the used weight the answer reported (-1: none) and whether a 429 shuts it.
_FINISH = """
local n = tonumber(ARGV[1])
local member = ARGV[2]
local window = tonumber(ARGV[3])
local shut_ms = tonumber(ARGV[4])
local ban_ms = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local z, s, e, c = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local w = tonumber(ARGV[3 + 3*i])
  local reported = tonumber(ARGV[4 + 3*i])
  local shuts = ARGV[5 + 3*i] == '1'
  if w > 0 and redis.call('ZSCORE', z, member .. ':' .. w) then
    redis.call('ZADD', z, 'XX', now + window, member .. ':' .. w)
  end
  if reported >= 0 then
    local ours = tonumber(redis.call('GET', s) or '0')
    local outside = reported - ours
    if outside > 0 then
      if shuts then outside = math.max(outside, tonumber(redis.call('GET', e) or '0')) end
      redis.call('SET', e, outside, 'PX', window)
    end
  end
  if shuts and shut_ms > 0 then
    redis.call('SET', c, '1', 'PX', shut_ms)
  end
end
if ban_ms > 0 then redis.call('SET', KEYS[4 * n + 1], '1', 'PX', ban_ms) end
return 1
"""

# KEYS: per budget its set and total. ARGV: budgets n, member, then per budget its weight.
_CANCEL = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local w = tonumber(ARGV[2 + i])
  if redis.call('ZREM', KEYS[2*i-1], ARGV[2] .. ':' .. w) == 1 then
    redis.call('DECRBY', KEYS[2*i], w)
  end
end
return 1
"""


# KEYS: per budget its set, outside weight and shut-until keys (3 each), then the pause key and
# each family's ban key. ARGV: budgets n. Returns per budget the weight held, the outside
# weight, ms until all it holds has expired and ms it stays shut; then ms of pause; then ms of
# ban per family. Reads only: what has expired is left for the next charge to drop.
_READ = """
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, n do
  local held, last = 0, now
  local live = redis.call('ZRANGEBYSCORE', KEYS[3*i-2], '(' .. now, '+inf', 'WITHSCORES')
  for j = 1, #live, 2 do
    held = held + tonumber(string.match(live[j], ':(%d+)$'))
    last = math.max(last, tonumber(live[j + 1]))
  end
  table.insert(out, held)
  table.insert(out, tonumber(redis.call('GET', KEYS[3*i-1]) or '0'))
  table.insert(out, last - now)
  table.insert(out, math.max(0, redis.call('PTTL', KEYS[3*i])))
end
for j = 3*n + 1, #KEYS do table.insert(out, math.max(0, redis.call('PTTL', KEYS[j]))) end
return out
"""

#: How long the marker outlives the last charge: it tells a flush from a fleet long idle.
MARKER_LIFE = 86_400.0


def budget_key(name: str) -> str:
    """A budget's name in Redis: ``sapi_uid:`` budgets by a hash of the API key, never the key."""
    kind, _, account = name.partition(":")
    if not account:
        return kind
    return f"{kind}:{hashlib.sha256(account.encode()).hexdigest()[:24]}"


class RedisStore:
    """The budgets of every process that uses the same Redis and ``prefix``.

    Args:
        url: a Redis URL (``redis://host:port/db``, ``rediss://`` for TLS, ``unix://``).
        prefix: the start of every key this store writes.
        timeout: seconds one round trip may take before it counts as a failure.
        client: a ``redis.asyncio.Redis`` to use instead of ``url`` (closed by its owner).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "binance_pm",
        timeout: float = 1.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"prefix must be a word, not {prefix!r}")
        self.prefix = prefix
        self._owns = client is None
        self._redis: aioredis.Redis = client or aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._charge = self._redis.register_script(_CHARGE)
        self._finish = self._redis.register_script(_FINISH)
        self._cancel = self._redis.register_script(_CANCEL)
        self._read = self._redis.register_script(_READ)
        self._token = secrets.token_hex(6)  # this process's members: never two alike
        self._run_id: str | None = None  # the server's, to tell a restart (counts lost)
        self._failed_at: float | None = None  # monotonic time of the first failure in a row
        self._epoch = ""  # the marker last seen: another, or none, means the counts were lost
        self._paused_until = 0.0  # monotonic: after lost counts, nothing is charged before
        self._shut_until = 0.0  # monotonic: the last 429's shut or 418's ban known here ends
        self._count = 0
        self._url = url if client is None else "(given client)"

    def member(self) -> str:
        """A name for one request, unique across processes."""
        self._count += 1
        return f"{self._token}-{self._count}"

    def _keys(self, name: str, *suffixes: str) -> list[str]:
        base = f"{self.prefix}:{budget_key(name)}"
        return [f"{base}:{suffix}" for suffix in suffixes]

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
        now = time.monotonic()
        paused = self._paused_until - now
        if paused > 0:
            return paused
        if self._failed_at is not None or self._run_id is None:
            await self._check_server(window)
            now = time.monotonic()
            paused = self._paused_until - now
            if paused > 0:
                return paused
        pause = max(window, self._shut_until - now)
        keys: list[str] = []
        argv: list[Any] = [
            len(budgets),
            member,
            int(hold * 1000),
            int(window * 1000),
            self._epoch,
            secrets.token_hex(8),
            math.ceil(pause * 1000),
            int(MARKER_LIFE * 1000),
        ]
        for name, weight, limit in budgets:
            keys += self._keys(name, "z", "s", "e", "c", "k")
            argv += [weight, limit]
        keys += [f"{self.prefix}:marker", f"{self.prefix}:pause", f"{self.prefix}:ban:{family}"]
        try:
            granted, wait_ms, epoch, why = await self._charge(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        self._epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        if int(granted) == 1:
            return 0.0
        wait = max(int(wait_ms), 1) / 1000
        why = int(why)
        if why == 1:
            self._shut_until = max(self._shut_until, now + wait)
        elif why >= 2:  # lost counts: held here too, should the pause key go as well
            self._paused_until = max(self._paused_until, now + wait)
            if why == 3:
                log.warning(
                    "the rate-limit store lost its counts (flushed or evicted): nothing is "
                    "charged for %.3g s, until what was sent before has left the window",
                    wait,
                )
        return wait

    async def _check_server(self, window: float) -> None:
        """Learn the server's run id; a new one after a failure means its counts are gone."""
        try:
            info = await self._redis.info("server")
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        run_id = str(info.get("run_id", ""))
        if self._run_id is not None and run_id != self._run_id and self._failed_at is not None:
            self._paused_until = self._failed_at + window
            self._epoch = ""  # the restart explains the lost marker: its pause is enough
        self._run_id = run_id
        self._failed_at = None

    def _failed(self, exc: BaseException) -> StoreError:
        if self._failed_at is None:
            self._failed_at = time.monotonic()
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
        keys: list[str] = []
        argv: list[Any] = [
            len(budgets),
            member,
            int(window * 1000),
            int(shut * 1000),
            int(ban * 1000),
        ]
        for name, weight, reported, shuts in budgets:
            keys += self._keys(name, "z", "s", "e", "c")
            argv += [weight, -1 if reported is None else reported, 1 if shuts else 0]
        keys.append(f"{self.prefix}:ban:{family}")
        if shut or ban:
            self._shut_until = max(self._shut_until, time.monotonic() + max(shut, ban))
        try:
            await self._finish(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None

    async def cancel(self, budgets: Sequence[tuple[str, int]], *, member: str) -> None:
        """A request that never left: give its weight back."""
        keys: list[str] = []
        argv: list[Any] = [len(budgets), member]
        for name, weight in budgets:
            keys += self._keys(name, "z", "s")
            argv.append(weight)
        try:
            await self._cancel(keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None

    async def read(
        self, budgets: Sequence[str], *, families: Sequence[str]
    ) -> tuple[list[SharedCount], dict[str, float]]:
        """What the store holds now for each of ``budgets`` (as :meth:`charge` names them), and
        each family's ban in seconds (0: none); a pause after lost counts shuts every budget."""
        keys: list[str] = []
        for name in budgets:
            keys += self._keys(name, "z", "e", "c")
        keys.append(f"{self.prefix}:pause")
        keys += [f"{self.prefix}:ban:{family}" for family in families]
        try:
            values = [int(v) for v in await self._read(keys=keys, args=[len(budgets)])]
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None
        n = len(budgets)
        paused = max(values[4 * n], (self._paused_until - time.monotonic()) * 1000)
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
        if self._owns:
            await self._redis.aclose()

    def __repr__(self) -> str:
        url = self._url.split("@")[-1]  # no password
        return f"RedisStore({url}, prefix={self.prefix!r})"

"""A fleet of watchers on Redis: accounts shared out among processes, each watched by one.

::

    from binance_pm import Session
    from binance_pm.fleet import Fleet

    fleet = Fleet("redis://127.0.0.1:6379/0", name="desk", member="host-a")
    async with Session() as session:
        clients = [session.client(key, secret=secret) for key, secret in keys]
        async with session.poll(clients, every=5.0, fleet=fleet) as updates:
            async for update in updates:  # only the accounts this member holds
                ...

Every member runs the same code with the same accounts; ``name`` is the fleet, ``member`` this
process in it. Needs the ``redis`` extra, like :mod:`binance_pm.redis`.

- **Members** say they are alive every quarter of ``lease_ttl``, on Redis's clock (members'
  own clocks may differ by seconds: they are never compared); one silent for ``lease_ttl`` is
  no longer a member.
- **Accounts are spread** by rendezvous hashing over the members alive: each account goes to
  the member whose hash with it is highest, so the spread is even, and a member joining or
  leaving moves only its own share.
- **Each member holds a lease** on each account it watches: a Redis key with its name, which
  lasts ``lease_ttl`` unless renewed. An account is taken only when its lease is free, and let
  go when it belongs to another member now (a member joined): at most one member holds it.
- **A member watches an account** only while it holds the lease *and* its own clock says the
  lease cannot have run out: the renewal was sent less than 90 % of ``lease_ttl`` ago. A member
  paused (SIGSTOP) or cut off from Redis stops watching before anyone else may take over, and
  takes nothing back when it comes back unless the lease is free.
- **A member that dies** (killed, its machine gone) stops renewing: its leases run out within
  ``lease_ttl``, and the others take its accounts at their next look (a quarter of
  ``lease_ttl``), polling each at once.
- **A member that leaves** (its poll ends) lets go of its leases and its membership at once.
- **Losing Redis** is told (:attr:`Fleet.trouble`, and the ``on_trouble`` callback) at the first
  failed look; the member watches nothing once its leases may have run out (fail closed), and
  goes on looking.

Keys, under ``{prefix}:fleet:{name}:``, hold no API key: accounts are named by a hash of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import _config
from ._redis_keys import account_key
from .redis import _connect, _script

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["LEASE_TTL", "Fleet"]

log = logging.getLogger("binance_pm")

#: Seconds a lease lasts unless renewed, by default.
LEASE_TTL = _config.LEASE_TTL
#: Of a lease's life, the share after its renewal was sent during which it is taken to hold.
SAFE_SHARE = 0.9
#: The longest time between two looks, whatever the lease (so that trouble is told in time).
LONGEST_LOOK = 5.0

_BEAT, _LEASE = _script("fleet_beat"), _script("fleet_lease")


class Fleet:
    """The accounts of a fleet, shared out among its members through Redis.

    Args:
        url: a Redis URL (``redis://host:port/db``, ``rediss://`` for TLS, ``unix://``).
        name: the fleet: every member with the same Redis, ``prefix`` and ``name`` shares
            the same accounts out.
        member: this member's name in the fleet (unique among its members); by default
            ``host:pid``.
        lease_ttl: seconds a lease lasts unless renewed (at least 1): a dead member's
            accounts are taken over within about 1.25 times this.
        prefix: the start of every key the fleet writes.
        timeout: seconds one round trip to Redis may take before it counts as a failure.
        client: a ``redis.asyncio.Redis`` to use instead of ``url`` (closed by its owner).
        on_trouble: called with what went wrong when Redis cannot be reached (or answers
            what it should not), and with ``None`` when it can again.
        clock: the monotonic clock leases are timed on here (for tests).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        name: str = "binance_pm",
        member: str | None = None,
        lease_ttl: float = LEASE_TTL,
        prefix: str = "binance_pm",
        timeout: float = 1.0,
        client: aioredis.Redis | None = None,
        on_trouble: Callable[[str | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for what, word in (("name", name), ("prefix", prefix)):
            if not isinstance(word, str) or not word or any(c.isspace() for c in word):
                raise ValueError(f"{what} must be a word, not {word!r}")
        if member is None:
            member = f"{socket.gethostname()}:{os.getpid()}"
        if not isinstance(member, str) or not member or any(c.isspace() for c in member):
            raise ValueError(f"member must be a word, not {member!r}")
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)):
            raise TypeError(f"lease_ttl must be seconds, not {type(lease_ttl).__name__}")
        if not 1.0 <= lease_ttl <= 3600.0:
            raise ValueError(f"lease_ttl must be 1 to 3600 seconds, not {lease_ttl!r}")
        self.name = name
        """The fleet's name."""
        self.member = member
        """This member's name."""
        self.lease_ttl = float(lease_ttl)
        """Seconds a lease lasts unless renewed."""
        self.members: tuple[str, ...] = ()
        """The members alive at the last look, this one included, sorted."""
        self.trouble: str | None = None
        """What went wrong at the last look, if it did: the member then watches nothing once
        its leases may have run out."""
        self._base = f"{prefix}:fleet:{name}"
        self._owns = client is None
        self._redis: aioredis.Redis = client or _connect(url, timeout)
        self._beat = self._redis.register_script(_BEAT)
        self._lease = self._redis.register_script(_LEASE)
        self._on_trouble = on_trouble
        self._clock = clock
        self._url = url if client is None else "(given client)"
        self._ids: dict[AsyncClient, str] = {}
        self._clients: dict[str, AsyncClient] = {}
        self._holders: dict[str, str] = {}  # account id -> its holder at the last look
        self._mine: frozenset[str] = frozenset()
        self._safe_until = -1.0  # on self._clock: the leases held may not have run out
        self._spread: tuple[tuple[str, ...], dict[str, str]] = ((), {})
        self._free_since: dict[str, float] = {}  # accounts no member held, since when
        self._orphans: set[str] = set()  # taken though another member's: nobody else took them
        self._running = False

    # -- what the poll asks ------------------------------------------------------------------

    def mine(self, client: AsyncClient) -> bool:
        """Whether this member watches ``client``'s account now: it holds the lease, and the
        lease cannot have run out since."""
        account = self._ids.get(client)
        return account is not None and account in self._mine and self._clock() < self._safe_until

    def owner(self, client: AsyncClient) -> str | None:
        """The member that held ``client``'s account at the last look (``None``: none did)."""
        account = self._ids.get(client)
        return None if account is None else self._holders.get(account)

    # -- the looks -----------------------------------------------------------------------------

    async def run(
        self,
        clients: Iterable[AsyncClient],
        *,
        gained: Callable[[list[AsyncClient]], None] = lambda clients: None,
    ) -> None:
        """Share ``clients`` out with the other members until cancelled, looking every quarter
        of ``lease_ttl``; ``gained`` is told each time this member takes accounts. On the way
        out, this member's leases and membership are let go, so others take over at once.
        One run at a time."""
        if self._running:
            raise RuntimeError("this Fleet is already running: one poll at a time")
        self._running = True
        self._ids = {client: account_key(client.api_key) for client in clients}
        self._clients = {account: client for client, account in self._ids.items()}
        self._spread, self._holders, self._free_since = ((), {}), {}, {}
        self._mine, self._orphans, self._safe_until = frozenset(), set(), -1.0
        try:
            while True:
                taken, soon = await self._look()
                if taken:
                    gained([self._clients[account] for account in taken])
                await anyio.sleep(min(self.lease_ttl / 4, LONGEST_LOOK, soon))
        finally:
            self._running = False
            self._mine, self._safe_until = frozenset(), -1.0
            with anyio.move_on_after(2.0, shield=True):
                await self._leave()

    async def _look(self) -> tuple[set[str], float]:
        """One look: say this member is alive, take and keep its share, let go of the rest;
        the accounts it took, and how soon the next look is worth making (a member falls
        silent, or a lease this member should take runs out)."""
        ttl_ms = int(self.lease_ttl * 1000)
        sent = self._clock()
        try:
            alive = await self._beat(keys=[f"{self._base}:members"], args=[self.member, ttl_ms])
            members = tuple(sorted(_text(m) for m in alive[:-1]))
            if self.member not in members:
                raise _Odd("Redis does not list this member among those alive")
            share = self._share(members)
            # Its share; and any account free for a whole lease (its member has no client for
            # it: another process's list differs), kept once taken.
            orphans = self._orphans | {
                a for a, since in self._free_since.items() if sent - since >= self.lease_ttl
            }
            hold = [a for a in share if share[a] == self.member or a in orphans]
            wanted = set(hold)
            release = [a for a in self._mine if a not in wanted]
            # Let go here before Redis does: if the answer is lost, they are not polled meanwhile.
            self._mine = self._mine - set(release)
            rest = [a for a in share if a not in wanted and a not in self._mine]
            order = [*hold, *release, *rest]
            holders = await self._lease(
                keys=[f"{self._base}:lease:{account}" for account in order],
                args=[self.member, ttl_ms, len(hold), len(release)],
            )
            silent, expiring = int(alive[-1]), int(holders.pop())
        except (RedisError, OSError, asyncio.TimeoutError, _Odd, ValueError, IndexError) as exc:
            self._troubled(f"{type(exc).__name__}: {exc}")
            return set(), LONGEST_LOOK
        lapsed = self._clock() >= self._safe_until  # nothing was polled since it lapsed
        self.members = members
        self._holders = {a: _text(h) for a, h in zip(order, holders, strict=True) if h}
        mine = frozenset(a for a in hold if self._holders.get(a) == self.member)
        taken = set(mine) if lapsed else set(mine - self._mine)
        self._mine = mine
        self._orphans = {a for a in orphans if a in mine}
        self._free_since = {
            a: self._free_since.get(a, sent) for a in self._clients if a not in self._holders
        }
        self._safe_until = sent + self.lease_ttl * SAFE_SHARE
        soon = [ms / 1000 + 0.005 for ms in (silent, expiring) if ms >= 0]
        if self.trouble is not None:
            self.trouble = None
            log.warning("fleet %s: Redis at %s answers again", self.name, self._url)
            if self._on_trouble is not None:
                self._on_trouble(None)
        return taken, min(soon, default=LONGEST_LOOK)

    def _share(self, members: tuple[str, ...]) -> dict[str, str]:
        """Each account's member, by rendezvous hashing (kept until the members change)."""
        known, share = self._spread
        if known != members or not share:
            share = {account: _highest(account, members) for account in self._clients}
            self._spread = (members, share)
        return share

    def _troubled(self, why: str) -> None:
        first = self.trouble is None
        self.trouble = why
        if first:
            log.warning(
                "fleet %s: cannot reach Redis at %s (%s): this member takes nothing and stops "
                "watching its accounts once their leases may have run out",
                self.name,
                self._url,
                why,
            )
            if self._on_trouble is not None:
                self._on_trouble(why)

    async def _leave(self) -> None:
        """Let go of every lease this member holds, and of its membership."""
        try:
            await self._lease(
                keys=[f"{self._base}:lease:{account}" for account in self._clients],
                args=[self.member, 1, 0, len(self._clients)],
            )
            await self._redis.zrem(f"{self._base}:members", self.member)
        except (RedisError, OSError) as exc:
            log.info("fleet %s: could not let go of the leases: %s", self.name, exc)

    async def aclose(self) -> None:
        """Close the connection to Redis, unless the caller gave it."""
        if self._owns:
            await self._redis.aclose()

    def __repr__(self) -> str:
        return (
            f"Fleet({self.name!r}, member={self.member!r}, lease_ttl={self.lease_ttl:g}, "
            f"members={len(self.members)}, holds={len(self._mine)})"
        )


class _Odd(Exception):
    """Redis answered what it should not."""


def _highest(account: str, members: Sequence[str]) -> str:
    """The member whose hash with ``account`` is highest."""
    return max(
        members,
        key=lambda m: hashlib.blake2b(f"{m}\0{account}".encode(), digest_size=8).digest(),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

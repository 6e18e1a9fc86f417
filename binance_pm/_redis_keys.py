"""Where the Redis store keeps what it counts: every key's name, built in one place.

Under a store's ``prefix``, each budget has five keys, named by the budget and a role::

    {prefix}:{budget}:z    the requests it holds, a sorted set scored by when they stop counting
    {prefix}:{budget}:s    their total weight
    {prefix}:{budget}:e    the outside weight: what the exchange reported beyond them
    {prefix}:{budget}:c    set while a 429 keeps the budget shut
    {prefix}:{budget}:k    the claim of a waiter that keeps failing to fit

and every budget shares three more::

    {prefix}:marker         changes, or goes, when the counts are lost (a flush, an eviction)
    {prefix}:pause          set while nothing is charged after a loss
    {prefix}:ban:{family}   set while a 418 bans the family's IP

``{budget}`` is the governor's name for it, except that a ``sapi_uid:`` budget is named by a
hash of its API key, never the key. Each script (``_redis_lua/*.lua``) takes its ``KEYS`` in the
order its header says, and :class:`KeyLayout` builds each list in that order.

>>> KeyLayout("bp").finish(["papi_ip"], family="papi")
['bp:papi_ip:z', 'bp:papi_ip:s', 'bp:papi_ip:e', 'bp:papi_ip:c', 'bp:ban:papi']
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

#: The roles of a budget's keys, as their names end.
SET, TOTAL, OUTSIDE, SHUT, CLAIM = "z", "s", "e", "c", "k"


def budget_key(name: str) -> str:
    """A budget's name in Redis: ``sapi_uid:`` budgets by a hash of the API key, never the key."""
    kind, _, account = name.partition(":")
    if not account:
        return kind
    return f"{kind}:{hashlib.sha256(account.encode()).hexdigest()[:24]}"


class KeyLayout:
    """Every key a store with this ``prefix`` reads or writes.

    Raises:
        ValueError: when ``prefix`` is empty or holds a space.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"prefix must be a word, not {prefix!r}")
        self.prefix = prefix

    def budget(self, name: str, *roles: str) -> list[str]:
        """The keys of budget ``name`` (as the governor names it) for ``roles``, in order."""
        base = f"{self.prefix}:{budget_key(name)}"
        return [f"{base}:{role}" for role in roles]

    @property
    def marker(self) -> str:
        return f"{self.prefix}:marker"

    @property
    def pause(self) -> str:
        return f"{self.prefix}:pause"

    def ban(self, family: str) -> str:
        return f"{self.prefix}:ban:{family}"

    def _each(self, names: Iterable[str], *roles: str) -> list[str]:
        return [key for name in names for key in self.budget(name, *roles)]

    def charge(self, names: Iterable[str], *, family: str) -> list[str]:
        """``charge.lua``'s keys: five per budget, the marker, the pause, the family's ban."""
        keys = self._each(names, SET, TOTAL, OUTSIDE, SHUT, CLAIM)
        return [*keys, self.marker, self.pause, self.ban(family)]

    def finish(self, names: Iterable[str], *, family: str) -> list[str]:
        """``finish.lua``'s keys: four per budget, then the family's ban."""
        return [*self._each(names, SET, TOTAL, OUTSIDE, SHUT), self.ban(family)]

    def cancel(self, names: Iterable[str]) -> list[str]:
        """``cancel.lua``'s keys: two per budget."""
        return self._each(names, SET, TOTAL)

    def read(self, names: Iterable[str], *, families: Sequence[str]) -> list[str]:
        """``read.lua``'s keys: three per budget, the pause, then each family's ban."""
        keys = self._each(names, SET, OUTSIDE, SHUT)
        return [*keys, self.pause, *(self.ban(family) for family in families)]

    def __repr__(self) -> str:
        return f"KeyLayout({self.prefix!r})"

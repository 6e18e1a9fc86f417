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
hash of its API key, never the key. A store for one egress IP among several names that IP's
budgets and bans with it (``papi_ip@10.0.0.2``, ``ban:papi@10.0.0.2``): each egress has IP
limits of its own at the exchange, while an account's UID budget is the account's from any.

Each script (``_redis_lua/*.lua``) takes its ``KEYS`` in the order its header says, and
:class:`KeyLayout` builds each list in that order.

>>> KeyLayout("bp").finish(["papi_ip"], family="papi")
['bp:papi_ip:z', 'bp:papi_ip:s', 'bp:papi_ip:e', 'bp:papi_ip:c', 'bp:ban:papi']
>>> KeyLayout("bp", egress="10.0.0.2").cancel(["papi_ip", "sapi_uid:k"])  # doctest: +ELLIPSIS
['bp:papi_ip@10.0.0.2:z', 'bp:papi_ip@10.0.0.2:s', 'bp:sapi_uid:8254c3...:z', ...]
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
    return f"{kind}:{account_key(account)}"


def account_key(api_key: str) -> str:
    """An account's name in Redis: a hash of its API key, never the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


class KeyLayout:
    """Every key a store with this ``prefix`` reads or writes.

    Raises:
        ValueError: when ``prefix`` is empty or holds a space.
    """

    __slots__ = ("egress", "prefix")

    def __init__(self, prefix: str, egress: str | None = None) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"prefix must be a word, not {prefix!r}")
        if egress is not None and (not egress or any(c.isspace() for c in egress)):
            raise ValueError(f"egress must be a word, not {egress!r}")
        self.prefix = prefix
        self.egress = egress

    def budget(self, name: str, *roles: str) -> list[str]:
        """The keys of budget ``name`` (as the governor names it) for ``roles``, in order."""
        key = budget_key(name)
        if self.egress is not None and not name.startswith("sapi_uid:"):
            key = f"{key}@{self.egress}"
        base = f"{self.prefix}:{key}"
        return [f"{base}:{role}" for role in roles]

    @property
    def marker(self) -> str:
        return f"{self.prefix}:marker"

    @property
    def pause(self) -> str:
        return f"{self.prefix}:pause"

    def ban(self, family: str) -> str:
        at = "" if self.egress is None else f"@{self.egress}"
        return f"{self.prefix}:ban:{family}{at}"

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
        at = "" if self.egress is None else f", egress={self.egress!r}"
        return f"KeyLayout({self.prefix!r}{at})"

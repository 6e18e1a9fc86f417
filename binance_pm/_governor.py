"""The rate-limit governor: lets each request out only when its weight fits every budget it uses.

What it knows of each budget (which buckets a call takes, what answers said, the bans) is its
ledger's (``_ledger.py``); what each bucket holds, and why that keeps the exchange from ever
counting more than the limit in a window, is in ``_buckets.py``.

Waiting is first come, first served per bucket; a call that needs two buckets waits in both
queues at once and takes both together. A waiter sleeps until a timer (the moment enough weight
expires) or an event (an answer arrived, a reservation was given back) wakes it; nothing polls.
All state changes after the last ``await``, so a cancelled waiter takes nothing.

Each answer's used-weight headers tell the governor what the exchange counted; weight beyond its
own (another process on the same IP, a cost above the documented one) is held as ``external``
until the next answer says otherwise, and the reported count itself bounds what goes out before
the next answer. A 429 closes its bucket, a 418 its whole family, until ``Retry-After``, for
every account. ``try_acquire`` is the fast path: a synchronous grant when the budget has room,
a microsecond or two, with no coroutine; it and the waiters apply one rule
(``Ledger.grantable``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from ._attempts import ConnectionBudget
from ._buckets import Waiter
from ._endpoints import Endpoint
from ._hook import Permit, Store
from ._ledger import Ledger, checked
from ._limits import PUBLISHED_LIMITS, Limits
from ._permit import LocalPermit, too_late
from ._shared import FallBack, SharedBudgets
from ._states import BucketState
from ._wakeup import sleep_or_wake


class Governor:
    """Keeps every request of the Sessions that share it inside the exchange's rate limits.

    ::

        gov = Governor()                       # the published limits, one-minute windows
        async with Session(governor=gov) as a, Session(governor=gov) as b:
            ...                                # a and b share one budget
        gov.snapshot()["papi_ip"].used

    Args:
        window: seconds per rate-limit window.
        limits: weight per window of each budget (:class:`Limits`); the published ones.
        headroom: share of each limit left unused (0.1 keeps 10 % spare for other tools).
        sapi_uid_ip_weight: IP weight also charged for a UID-weighted SAPI call; the documents
            do not say. 0 by default, and learned when the sapi IP count UID answers report
            grows with UID calls alone (or a UID call is refused for IP weight).
        sapi_scope: ``"family"`` (the default, safe in either reading: one sapi IP budget) or
            ``"endpoint"`` (a budget per sapi endpoint, each with the ``sapi_ip`` limit, as the
            PM Pro page's "each endpoint with IP limits has an independent 12000 per minute").
        clock: monotonic seconds; ``time.monotonic`` by default.
        store: where budgets shared by many processes live (:class:`binance_pm.redis.RedisStore`);
            by default each governor counts in its own process.
        on_store_error: when the store cannot be reached, ``"closed"`` (calls wait, then raise
            :class:`~binance_pm.GovernorUnavailable` at their deadline; nothing is sent blind)
            or ``"local"`` (this process counts alone, with a warning, until it is back).
    """

    def __init__(
        self,
        *,
        window: float = 60.0,
        limits: Limits = PUBLISHED_LIMITS,
        headroom: float = 0.0,
        sapi_uid_ip_weight: int = 0,
        sapi_scope: str = "family",
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
        on_store_error: str = "closed",
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive seconds, not {window!r}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), not {headroom!r}")
        if sapi_scope not in ("family", "endpoint"):
            raise ValueError(f"sapi_scope must be 'family' or 'endpoint', not {sapi_scope!r}")
        if not isinstance(sapi_uid_ip_weight, int) or sapi_uid_ip_weight < 0:
            raise ValueError(
                f"sapi_uid_ip_weight must be a weight >= 0, not {sapi_uid_ip_weight!r}"
            )
        if on_store_error not in ("closed", "local"):
            raise ValueError(f"on_store_error must be 'closed' or 'local', not {on_store_error!r}")
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
        self.limits = limits
        self.window = float(window)
        self.headroom = headroom
        self.sapi_scope = sapi_scope
        self._clock = clock
        self._ledger = ledger = Ledger(
            limits,
            window=self.window,
            headroom=headroom,
            sapi_scope=sapi_scope,
            sapi_uid_ip_weight=sapi_uid_ip_weight,
            clock=clock,
        )
        # The ledger's own dicts, by the names tests and tools have long read them by.
        self._ip, self._uid = ledger.ip, ledger.uid
        # Its steps of a grant, bound once: try_acquire runs for every request.
        self._plan, self._grantable, self._grant = ledger.plan, ledger.grantable, ledger.grant
        #: Stream connection attempts (``Limits.ws_connect`` per ``Limits.ws_window``).
        shared_ws = None
        if store is not None:  # attempts counted by every process, over their own window
            fall_back = on_store_error == "local"
            shared_ws = SharedBudgets(store, limits.ws_window, fall_back=fall_back)
        self.connections = ConnectionBudget(
            ledger.effective(limits.ws_connect),
            limits.ws_window,
            clock=clock,
            banned_until=ledger.banned_until,
            ban=self.ban_ip,
            shared=shared_ws,
        )
        self.store = store
        self.on_store_error = on_store_error
        local = on_store_error == "local"
        self._shared = None
        if store is not None:
            self._shared = SharedBudgets(store, self.window, fall_back=local, sapi_scope=sapi_scope)

    @property
    def sapi_uid_ip_weight(self) -> int:
        """IP weight charged for each UID-weighted SAPI call: as given, or as learned since."""
        return self._ledger.sapi_uid_ip_weight

    # -- acquiring ----------------------------------------------------------------------------

    def try_acquire(self, endpoint: Endpoint[Any], *, account: str) -> Permit | None:
        """Reserve ``endpoint``'s weight if it fits now, without waiting; ``None`` if not.

        The fast path of :meth:`acquire`, with no coroutine to make: a caller tries this first
        and awaits :meth:`acquire` only when it returns ``None``. With a shared ``store`` every
        acquire is a round trip to it, so this returns ``None``.
        """
        if self.store is not None:
            return None
        buckets, weights = self._plan(endpoint, account)
        now = self._clock()
        if not self._grantable(buckets, weights, now):
            return None
        return self._grant(endpoint, account, buckets, weights, now)

    async def acquire(self, endpoint: Endpoint[Any], *, account: str, deadline: float) -> Permit:
        """Wait until ``endpoint``'s weight fits, reserve it, and return the permit.

        ``deadline`` is on anyio's clock. If the weight cannot fit before it, this raises at
        once, without waiting in vain: :class:`RateLimitError` or :class:`IPBannedError` while a
        429 or 418 holds the budget shut, :class:`GovernorTimeout` otherwise.
        """
        plan = checked(endpoint.label, self._ledger.plan(endpoint, account))
        buckets, weights = plan
        if self._shared is not None:
            try:
                return await self._shared.acquire(endpoint, account, deadline, buckets, weights)
            except FallBack:
                pass  # the store failed, and on_store_error="local": this process counts alone
        now = self._clock()
        if self._ledger.grantable(buckets, weights, now):  # no one waits, and it has room
            return self._ledger.grant(endpoint, account, buckets, weights, now)
        local_deadline = now + (deadline - anyio.current_time())
        return await self._wait(endpoint, account, Waiter(buckets, weights), local_deadline)

    async def _wait(
        self, endpoint: Endpoint[Any], account: str, waiter: Waiter, deadline: float
    ) -> LocalPermit:
        ledger = self._ledger
        banned_until = ledger.banned_until
        for bucket in waiter.buckets:
            bucket.enqueue(waiter)
        try:
            while True:
                now = self._clock()
                buckets, weights = waiter.buckets, waiter.weights
                if ledger.grantable(buckets, weights, now, waiter):
                    return ledger.grant(endpoint, account, buckets, weights, now)
                wake_at = waiter.wake_time(now, banned_until)
                if wake_at is not None and wake_at > deadline:
                    raise too_late(endpoint, account, buckets, banned_until, now, wake_at)
                if now >= deadline:
                    raise too_late(endpoint, account, buckets, banned_until, now, None)
                await sleep_or_wake(waiter, (wake_at if wake_at is not None else deadline) - now)
        finally:
            for bucket in waiter.buckets:
                bucket.leave(waiter)  # granted (at the head), cancelled, or too late
                bucket.wake()  # the next in line looks again

    def ban_ip(self, seconds: float) -> None:
        """The exchange banned this IP for ``seconds`` (a refused stream handshake said so):
        nothing goes out, in any family, before then."""
        self._ledger.ban(seconds)

    def reopen(self, budget: str | None = None) -> None:
        """Open a budget that a 429 or 418 holds shut, now: ``"papi_ip"``, ``"sapi_uid:…"``
        (as :meth:`snapshot` names them), a family (``"papi"``) for its ban, or ``None`` for
        every budget. For when you know better than the exchange's ``Retry-After`` (a ban
        lifted by support, say); calls waiting for it go on at once.

        Raises ``KeyError`` for a name no budget has. With a shared ``store`` this opens this
        process's view only; the store's own shut keys lapse at their time.
        """
        every = [*self._ledger.budgets(), self.connections.bucket]
        buckets = [b for b in every if budget in (None, b.name, b.family)]
        if not buckets:
            raise KeyError(f"no budget named {budget!r}; see Governor.snapshot()")
        self._ledger.reopen(buckets, budget, every)

    # -- looking ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, BucketState]:
        """Every budget now, by name: ``"api_ip"`` … ``"fapi_ip"``, ``"sapi_uid:vmPU…h8A"`` …

        With a ``store``, this process's own counts (idle unless the store failed): await
        :meth:`asnapshot` for the counts every process shares."""
        now = self._clock()
        banned = self._ledger.banned_until
        states = {b.name: b.state(now, banned[b.family]) for b in self._ledger.budgets()}
        states[self.connections.bucket.name] = self.connections.state(now)
        return states

    async def asnapshot(self) -> dict[str, BucketState]:
        """:meth:`snapshot`, read from the ``store`` if there is one: every process's weight
        (one round trip; :class:`~binance_pm.GovernorUnavailable` if the store fails)."""
        if self._shared is None:
            return self.snapshot()
        states = await self._shared.snapshot(self._ledger.budgets())
        states[self.connections.bucket.name] = self.connections.state(self._clock())
        return states

    def __repr__(self) -> str:
        now = self._clock()
        ledger = self._ledger
        parts = [b.describe(now) for b in ledger.budgets() if b.kind == "ip"]
        return (
            f"Governor(window={self.window:g}s, {', '.join(parts)}, {len(ledger.uid)} UID buckets)"
        )

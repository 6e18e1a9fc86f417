"""The rate-limit governor: lets each request out only when its weight fits every budget it uses.

Budgets: one IP bucket per API family (``api``, ``sapi``, ``papi``, ``fapi``) shared by every
account, and one UID bucket per account for UID-weighted SAPI endpoints. Weights come from the
endpoint table. What each bucket holds, and why that keeps the exchange from ever counting more
than the limit in a window, is in ``_buckets.py``.

Waiting is first come, first served per bucket; a call that needs two buckets waits in both
queues at once and takes both together. A waiter sleeps until a timer (the moment enough weight
expires) or an event (an answer arrived, a reservation was given back) wakes it; nothing polls.
All state changes after the last ``await``, so a cancelled waiter takes nothing.

Each answer's used-weight headers tell the governor what the exchange counted; weight beyond its
own (another process on the same IP, a cost above the documented one) is held as ``external``
until the next answer says otherwise, and the reported count itself bounds what goes out before
the next answer (``_learning.py``). A 429 closes its bucket, a 418 its whole family, until
``Retry-After``, for every account. ``try_acquire`` is the fast path: a synchronous grant when
the budget has room, about a microsecond and a half, with no coroutine.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ._attempts import ConnectionBudget
from ._buckets import Bucket, BucketState, Plan, Waiter, checked
from ._endpoints import ENDPOINTS, FAMILIES, PUBLISHED_LIMITS, Endpoint, Limits
from ._exceptions import mask_key
from ._headers import used_weights
from ._hook import Store
from ._learning import (
    UidCost,
    kind_of,
    learn,
    marks_of,
    marks_of_two,
    refused_kind,
    shut,
    shut_seconds,
)
from ._permit import Permit, too_late
from ._shared import FallBack, SharedBudgets, StorePermit


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
        self.sapi_uid_ip_weight = sapi_uid_ip_weight
        self.sapi_scope = sapi_scope
        self._clock = clock
        self._uid_limit = self._effective(limits.sapi_uid)
        self._ip: dict[str, Bucket] = {
            f: Bucket(f"{f}_ip", f, self._effective(limits[f"{f}_ip"]), self.window)
            for f in FAMILIES
        }
        self._by_endpoint: dict[str, Bucket] = {}  # sapi_scope="endpoint": sapi IP budgets
        for endpoint in ENDPOINTS.values():
            self._ip_of(endpoint)  # made now, so that snapshots show each
        self._uid_cost = UidCost()
        self._uid: dict[str, Bucket] = {}
        self._uid_names: dict[str, int] = {}  # masked key -> how many accounts mask alike
        # Each family's ban; "ws", stream connection attempts, is banned with any of them.
        self._banned_until: dict[str, float] = dict.fromkeys((*FAMILIES, "ws"), 0.0)
        #: Stream connection attempts (``Limits.ws_connect`` per ``Limits.ws_window``).
        shared_ws = None
        if store is not None:  # attempts counted by every process, over their own window
            fall_back = on_store_error == "local"
            shared_ws = SharedBudgets(store, limits.ws_window, fall_back=fall_back)
        self.connections = ConnectionBudget(
            self._effective(limits.ws_connect),
            limits.ws_window,
            clock=clock,
            banned_until=self._banned_until,
            ban=self.ban_ip,
            shared=shared_ws,
        )
        self._ip_plans: dict[str, Plan] = {}
        # No bucket is closed and no family banned before this: the fast path checks only it.
        self._shut_until = 0.0
        self.store = store
        self.on_store_error = on_store_error
        local = on_store_error == "local"
        self._shared = None
        if store is not None:
            self._shared = SharedBudgets(store, self.window, fall_back=local, sapi_scope=sapi_scope)

    def _effective(self, limit: int) -> int:
        return max(1, math.floor(limit * (1 - self.headroom)))

    def _ip_of(self, endpoint: Endpoint[Any]) -> Bucket:
        """The IP budget ``endpoint``'s calls are counted on (and a UID call's answer reports)."""
        if self.sapi_scope == "family" or endpoint.family != "sapi":
            return self._ip[endpoint.family]
        bucket = self._by_endpoint.get(endpoint.name)
        if bucket is None:
            family = self._ip["sapi"]
            bucket = self._by_endpoint[endpoint.name] = Bucket(
                f"sapi_ip:{endpoint.name}", "sapi", family.limit, self.window
            )
        return bucket

    def _budgets(self) -> list[Bucket]:
        ip = [b for f, b in self._ip.items() if f != "sapi" or self.sapi_scope == "family"]
        return [*ip, *self._by_endpoint.values(), *self._uid.values()]

    # -- acquiring ----------------------------------------------------------------------------

    def _plan(self, endpoint: Endpoint[Any], account: str) -> Plan:
        """The buckets and weights one call of ``endpoint`` for ``account`` takes."""
        if endpoint.bucket == "ip":
            plan = self._ip_plans.get(endpoint.name)
            if plan is None:
                plan = ((self._ip_of(endpoint),), (endpoint.weight,))
                self._ip_plans[endpoint.name] = checked(endpoint.label, plan)
            return plan
        uid = self._uid.get(account)
        if uid is None:
            uid = self._uid[account] = Bucket(
                self._uid_name(account), "sapi", self._uid_limit, self.window
            )
        # Not cached: a plan per account would cost more memory than making it costs time.
        ip_weight = self.sapi_uid_ip_weight
        if ip_weight:
            uid_plan: Plan = ((uid, self._ip_of(endpoint)), (endpoint.weight, ip_weight))
        else:
            uid_plan = ((uid,), (endpoint.weight,))
        if endpoint.weight > uid.limit or ip_weight > self._ip["sapi"].limit:
            checked(endpoint.label, uid_plan)
        return uid_plan

    def _uid_name(self, account: str) -> str:
        """``sapi_uid:`` and the masked key; two keys that mask alike get ``#2``, ``#3``…"""
        base = f"sapi_uid:{mask_key(account)}"
        count = self._uid_names[base] = self._uid_names.get(base, 0) + 1
        return base if count == 1 else f"{base}#{count}"

    def try_acquire(self, endpoint: Endpoint[Any], *, account: str) -> Permit | None:
        """Reserve ``endpoint``'s weight if it fits now, without waiting; ``None`` if not.

        The fast path of :meth:`acquire`, with no coroutine to make: a caller tries this first
        and awaits :meth:`acquire` only when it returns ``None``. With a shared ``store`` every
        acquire is a round trip to it, so this returns ``None``.
        """
        if self.store is not None:
            return None
        return self._try_local(endpoint, account)

    def _try_local(self, endpoint: Endpoint[Any], account: str) -> Permit | None:
        if endpoint.bucket == "ip":
            plan = self._ip_plans.get(endpoint.name)
            if plan is None:
                plan = self._plan(endpoint, account)
            buckets, weights = plan
            bucket = buckets[0]
            now = self._clock()
            if now < self._shut_until or not bucket.can_take(weights[0], now):
                return None
            bucket.inflight += weights[0]
            return Permit(self, endpoint, account, buckets, weights, marks_of(bucket))
        uid = self._uid.get(account)
        if uid is None:
            self._plan(endpoint, account)  # a new account: its budget is made
            uid = self._uid[account]
        weight = endpoint.weight
        now = self._clock()
        if now < self._shut_until or not uid.can_take(weight, now):
            return None
        ip_weight = self.sapi_uid_ip_weight
        if not ip_weight:
            return self._grant(endpoint, account, (uid,), (weight,), now)
        ip = self._ip_of(endpoint)
        if not ip.can_take(ip_weight, now):
            return None
        return self._grant(endpoint, account, (uid, ip), (weight, ip_weight), now)

    async def acquire(
        self, endpoint: Endpoint[Any], *, account: str, deadline: float
    ) -> Permit | StorePermit:
        """Wait until ``endpoint``'s weight fits, reserve it, and return the :class:`Permit`.

        ``deadline`` is on anyio's clock. If the weight cannot fit before it, this raises at
        once, without waiting in vain: :class:`RateLimitError` or :class:`IPBannedError` while a
        429 or 418 holds the budget shut, :class:`GovernorTimeout` otherwise.
        """
        buckets, weights = self._plan(endpoint, account)  # a new account's budget is made
        if self._shared is not None:
            try:
                return await self._shared.acquire(endpoint, account, deadline, buckets, weights)
            except FallBack:
                pass  # the store failed, and on_store_error="local": this process counts alone
        permit = self._try_local(endpoint, account)
        if permit is not None:
            return permit
        now = self._clock()
        local_deadline = now + (deadline - anyio.current_time())
        return await self._wait(endpoint, account, Waiter(buckets, weights), local_deadline)

    def _grant(
        self,
        endpoint: Endpoint[Any],
        account: str,
        buckets: tuple[Bucket, ...],
        weights: tuple[int, ...],
        now: float,
    ) -> Permit:
        first = buckets[0]
        first.inflight += weights[0]
        if len(buckets) == 2:
            second = buckets[1]
            second.inflight += weights[1]
        elif endpoint.bucket == "uid":
            second = self._ip_of(endpoint)  # a UID call's answer reports the IP weight too
            second.expire(now)
            second.uid_calls += 1
        else:
            return Permit(self, endpoint, account, buckets, weights, marks_of(first))
        return Permit(self, endpoint, account, buckets, weights, marks_of_two(first, second))

    async def _wait(
        self, endpoint: Endpoint[Any], account: str, waiter: Waiter, deadline: float
    ) -> Permit:
        for bucket in waiter.buckets:
            if bucket.waiters is None:
                bucket.waiters = deque()
            bucket.waiters.append(waiter)
        granted = False
        try:
            while True:
                now = self._clock()
                if waiter.grantable(now, self._banned_until):
                    granted = True
                    for bucket in waiter.buckets:
                        bucket.waiters.popleft()  # type: ignore[union-attr]
                    return self._grant(endpoint, account, waiter.buckets, waiter.weights, now)
                wake_at = waiter.wake_time(now, self._banned_until)
                if wake_at is not None and wake_at > deadline:
                    raise too_late(
                        endpoint, account, waiter.buckets, self._banned_until, now, wake_at
                    )
                if now >= deadline:
                    raise too_late(endpoint, account, waiter.buckets, self._banned_until, now, None)
                waiter.event = anyio.Event()
                with anyio.move_on_after((wake_at if wake_at is not None else deadline) - now):
                    await waiter.event.wait()
        finally:
            if not granted:
                for bucket in waiter.buckets:
                    if bucket.waiters is not None and waiter in bucket.waiters:
                        bucket.waiters.remove(waiter)
            self._wake(waiter.buckets)

    def _wake(self, buckets: tuple[Bucket, ...]) -> None:
        for bucket in buckets:
            head = bucket.head()
            if head is not None and head.event is not None:
                head.event.set()

    # -- learning from answers ---------------------------------------------------------------

    def _learn(self, permit: Permit, headers: Mapping[str, str], now: float) -> None:
        """What the answer's used-weight headers say of each budget it reports on (see
        :func:`binance_pm._learning.learn`)."""
        reported = used_weights(headers, permit.endpoint.family)
        if not reported:
            return
        for bucket, weight, marks in permit._reported():
            used = reported.get(kind_of(bucket.name))
            if used is None:
                continue
            learn(bucket, used, weight, marks, now)
            if bucket not in permit.buckets:
                # Its waiter waits for an answer, or timed itself by the old estimate (the
                # permit's own buckets are woken when it completes).
                self._wake((bucket,))
                # A UID call that took no IP weight: does the IP count grow with such calls?
                granted = bucket.held + bucket.inflight + bucket.gone_total
                weight = permit.endpoint.weight
                cost = self._uid_cost.learn(used, marks, permit._marks[-1], granted, weight)
                self.sapi_uid_ip_weight = max(self.sapi_uid_ip_weight, cost)

    def _close(
        self, permit: Permit, status: int, headers: Mapping[str, str] | None, now: float
    ) -> None:
        wait = shut_seconds(headers, self.window)
        family = permit.endpoint.family
        self._shut_until = max(self._shut_until, now + wait)
        if status == 418:
            for banned in (family, "ws"):  # no stream connects while the IP is banned
                self._banned_until[banned] = max(self._banned_until[banned], now + wait)
            bucket = self._ip_of(permit.endpoint)
        elif permit.endpoint.bucket == "ip":
            bucket = permit.buckets[0]
        else:  # a UID call: the headers tell whether its UID or the IP budget was refused
            uid, ip = permit.buckets[0], self._ip_of(permit.endpoint)
            kind = refused_kind(used_weights(headers or {}, family), uid.limit, ip.limit)
            bucket = uid if kind == "uid" else ip
        if bucket.name.startswith("sapi_ip") and permit.endpoint.bucket == "uid":
            # Refused for IP weight: the exchange charges UID calls IP weight too.
            self.sapi_uid_ip_weight = max(self.sapi_uid_ip_weight, permit.endpoint.weight)
        shut(bucket, now, wait)
        bucket.bans += status == 418
        self._wake((bucket,))

    def ban_ip(self, seconds: float) -> None:
        """The exchange banned this IP for ``seconds`` (a refused stream handshake said so):
        nothing goes out, in any family, before then."""
        until = self._clock() + seconds
        for family, banned in self._banned_until.items():
            self._banned_until[family] = max(banned, until)
        self._shut_until = max(self._shut_until, until)

    def reopen(self, budget: str | None = None) -> None:
        """Open a budget that a 429 or 418 holds shut, now: ``"papi_ip"``, ``"sapi_uid:…"``
        (as :meth:`snapshot` names them), a family (``"papi"``) for its ban, or ``None`` for
        every budget. For when you know better than the exchange's ``Retry-After`` (a ban
        lifted by support, say); calls waiting for it go on at once.

        Raises ``KeyError`` for a name no budget has. With a shared ``store`` this opens this
        process's view only; the store's own shut keys lapse at their time.
        """
        every = [*self._budgets(), self.connections.bucket]
        buckets = [b for b in every if budget in (None, b.name, b.family)]
        if not buckets:
            raise KeyError(f"no budget named {budget!r}; see Governor.snapshot()")
        for bucket in buckets:
            bucket.closed_until = 0.0
            if budget in (None, bucket.family, f"{bucket.family}_ip"):
                self._banned_until[bucket.family] = 0.0
                self._banned_until["ws"] = 0.0
        shuts = [*self._banned_until.values(), *(b.closed_until for b in every)]
        self._shut_until = max(shuts, default=0.0)
        self._wake(tuple(buckets))

    # -- looking ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, BucketState]:
        """Every budget now, by name: ``"api_ip"`` … ``"fapi_ip"``, ``"sapi_uid:vmPU…h8A"`` …

        With a ``store``, this process's own counts (idle unless the store failed): await
        :meth:`asnapshot` for the counts every process shares."""
        now = self._clock()
        banned = self._banned_until
        states = {b.name: b.state(now, banned[b.family]) for b in self._budgets()}
        states[self.connections.bucket.name] = self.connections.state(now)
        return states

    async def asnapshot(self) -> dict[str, BucketState]:
        """:meth:`snapshot`, read from the ``store`` if there is one: every process's weight
        (one round trip; :class:`~binance_pm.GovernorUnavailable` if the store fails)."""
        if self._shared is None:
            return self.snapshot()
        states = await self._shared.snapshot(self._budgets(), self._uid)
        states[self.connections.bucket.name] = self.connections.state(self._clock())
        return states

    def __repr__(self) -> str:
        now = self._clock()
        parts = [b.describe(now) for b in self._budgets() if kind_of(b.name) == "ip"]
        return (
            f"Governor(window={self.window:g}s, {', '.join(parts)}, {len(self._uid)} UID buckets)"
        )

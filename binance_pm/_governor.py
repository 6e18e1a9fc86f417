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
the next answer (see ``_learn``). A 429 closes its bucket, a 418 its whole family, until
``Retry-After``, for every account; waiting calls then go on by themselves.

``try_acquire`` is the fast path: a synchronous check and grant when the budget has room, so
an uncontended request makes no coroutine and costs about a microsecond and a half.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ._buckets import Bucket, Waiter
from ._endpoints import FAMILIES, PUBLISHED_LIMITS, Endpoint, check_limits
from ._exceptions import GovernorTimeout, IPBannedError, RateLimitError, mask_key
from ._headers import LONGEST_BAN, retry_after_seconds, used_weights
from ._hook import Store
from ._shared import FallBack, SharedBudgets, StorePermit

Plan = tuple[tuple[Bucket, ...], tuple[int, ...]]
#: The least a 429 or 418 shuts a budget for (or a tenth of the window, if shorter), whatever
#: its ``Retry-After`` says: a refusal never turns into a loop of requests.
MIN_SHUT = 1.0


@dataclass(frozen=True, slots=True)
class BucketState:
    """One budget as :meth:`Governor.snapshot` sees it.

    Attributes:
        limit: weight allowed per window (after ``headroom``).
        used: weight counted now: held, in flight, and reported from outside.
        external: the part of ``used`` the exchange reported beyond this governor's own.
        waiters: calls waiting for this budget.
        rejections: 429s the exchange answered for it.
        resets_in: seconds until all weight held now has expired (in-flight weight aside).
        closed_for: seconds until a 429 or 418 stops holding this budget shut (0 when open).
    """

    limit: int
    used: int
    external: int
    waiters: int
    rejections: int
    resets_in: float
    closed_for: float


class Permit:
    """Weight reserved for one request; see :class:`binance_pm._hook.Permit`."""

    __slots__ = (
        "_done",
        "_governor",
        "_marks",
        "account",
        "buckets",
        "endpoint",
        "weights",
    )

    def __init__(
        self,
        governor: Governor,
        endpoint: Endpoint[Any],
        account: str,
        buckets: tuple[Bucket, ...],
        weights: tuple[int, ...],
        marks: tuple[int, ...],
    ) -> None:
        self._governor = governor
        self.endpoint = endpoint
        self.account = account
        self.buckets = buckets
        self.weights = weights
        # For each budget the answer reports on (the permit's buckets, and the IP bucket of a
        # UID call that takes none), three totals when this request went out: all our weight
        # ever let out, itself included; all of it finished; all of it gone (see ``_learn``).
        self._marks = marks
        self._done = False

    def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        for bucket, weight in zip(self.buckets, self.weights, strict=True):
            bucket.inflight -= weight  # it never left: its weight was not spent
            bucket.gone_total += weight
        self._governor._wake(self.buckets)

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        if self._done:
            return
        self._done = True
        governor = self._governor
        now = governor._clock()
        buckets = self.buckets
        answered = status is not None
        for bucket, weight in zip(buckets, self.weights, strict=False):  # pairs by making
            bucket.finish(weight, now, answered)
        if headers is not None:
            governor._learn(self, headers, now)
        if status == 429 or status == 418:
            governor._close(self, status, headers, now)
        for bucket in buckets:
            if bucket.waiters:
                governor._wake(buckets)
                break

    def _reported(self) -> list[tuple[Bucket, int, tuple[int, ...]]]:
        """The budgets the answer reports on, each with the weight it took and its marks."""
        buckets, weights, marks = self.buckets, self.weights, self._marks
        reported = [(buckets[0], weights[0], marks[:3])]
        if len(buckets) == 2:
            reported.append((buckets[1], weights[1], marks[3:]))
        elif self.endpoint.bucket == "uid":
            # A UID call's answer reports the family's IP weight too.
            reported.append((self._governor._ip[self.endpoint.family], 0, marks[3:]))
        return reported


class Governor:
    """Keeps every request of the Sessions that share it inside the exchange's rate limits.

    ::

        gov = Governor()                       # the published limits, one-minute windows
        async with Session(governor=gov) as a, Session(governor=gov) as b:
            ...                                # a and b share one budget
        gov.snapshot()["papi_ip"].used

    Args:
        window: seconds per rate-limit window.
        api_ip, sapi_ip, sapi_uid, papi_ip, fapi_ip: weight per window of each budget.
        headroom: share of each limit left unused (0.1 keeps 10 % spare for other tools).
        sapi_uid_ip_weight: IP weight also charged for a UID-weighted SAPI call. The documents
            do not say; 0 by default, and the headers teach the governor if the exchange does.
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
        api_ip: int = PUBLISHED_LIMITS["api_ip"],
        sapi_ip: int = PUBLISHED_LIMITS["sapi_ip"],
        sapi_uid: int = PUBLISHED_LIMITS["sapi_uid"],
        papi_ip: int = PUBLISHED_LIMITS["papi_ip"],
        fapi_ip: int = PUBLISHED_LIMITS["fapi_ip"],
        headroom: float = 0.0,
        sapi_uid_ip_weight: int = 0,
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
        on_store_error: str = "closed",
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive seconds, not {window!r}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), not {headroom!r}")
        if on_store_error not in ("closed", "local"):
            raise ValueError(f"on_store_error must be 'closed' or 'local', not {on_store_error!r}")
        limits = check_limits(
            {
                "api_ip": api_ip,
                "sapi_ip": sapi_ip,
                "sapi_uid": sapi_uid,
                "papi_ip": papi_ip,
                "fapi_ip": fapi_ip,
            }
        )
        self.window = float(window)
        self.headroom = headroom
        self.sapi_uid_ip_weight = sapi_uid_ip_weight
        self._clock = clock
        self._uid_limit = self._effective(sapi_uid)
        self._ip = {
            f: Bucket(f"{f}_ip", f, self._effective(limits[f"{f}_ip"]), self.window)
            for f in FAMILIES
        }
        self._uid: dict[str, Bucket] = {}
        self._uid_names: dict[str, int] = {}  # masked key -> how many accounts mask alike
        self._banned_until: dict[str, float] = dict.fromkeys(FAMILIES, 0.0)
        self._ip_plans: dict[str, Plan] = {}
        # No bucket is closed and no family banned before this: the fast path checks only it.
        self._shut_until = 0.0
        self.store = store
        self.on_store_error = on_store_error
        self._shared = (
            SharedBudgets(store, window=self.window, fall_back=on_store_error == "local")
            if store is not None
            else None
        )

    def _effective(self, limit: int) -> int:
        return max(1, math.floor(limit * (1 - self.headroom)))

    # -- acquiring ----------------------------------------------------------------------------

    def _plan(self, endpoint: Endpoint[Any], account: str) -> Plan:
        """The buckets and weights one call of ``endpoint`` for ``account`` takes."""
        if endpoint.bucket == "ip":
            plan = self._ip_plans.get(endpoint.name)
            if plan is None:
                plan = self._ip_plans[endpoint.name] = self._checked(
                    endpoint, ((self._ip[endpoint.family],), (endpoint.weight,))
                )
            return plan
        uid = self._uid.get(account)
        if uid is None:
            uid = self._uid[account] = Bucket(
                self._uid_name(account), "sapi", self._uid_limit, self.window
            )
        # Not cached: a plan per account would cost more memory than making it costs time.
        if self.sapi_uid_ip_weight:
            uid_plan: Plan = ((uid, self._ip["sapi"]), (endpoint.weight, self.sapi_uid_ip_weight))
        else:
            uid_plan = ((uid,), (endpoint.weight,))
        if endpoint.weight > uid.limit or self.sapi_uid_ip_weight > self._ip["sapi"].limit:
            self._checked(endpoint, uid_plan)
        return uid_plan

    @staticmethod
    def _checked(endpoint: Endpoint[Any], plan: Plan) -> Plan:
        for bucket, weight in zip(*plan, strict=True):
            if weight > bucket.limit:
                raise ValueError(
                    f"{endpoint.label} weighs {weight}, more than the {bucket.name} limit of "
                    f"{bucket.limit} per window: it could never be sent"
                )
        return plan

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
            if (
                bucket.waiters
                or now < self._shut_until
                or (bucket.inflight and not bucket.answered)
                or not bucket.fits(weights[0], now)
            ):
                return None
            bucket.inflight += weights[0]
            gone = bucket.gone_total
            marks = (bucket.held + bucket.inflight + gone, bucket.finished_total, gone)
            return Permit(self, endpoint, account, buckets, weights, marks)
        uid = self._uid.get(account)
        if uid is None:
            self._plan(endpoint, account)  # a new account: its budget is made
            uid = self._uid[account]
        weight = endpoint.weight
        now = self._clock()
        if (
            now < self._shut_until
            or uid.waiters
            or (uid.inflight and not uid.answered)
            or not uid.fits(weight, now)
        ):
            return None
        ip_weight = self.sapi_uid_ip_weight
        if not ip_weight:
            return self._grant(endpoint, account, (uid,), (weight,), now)
        ip = self._ip[endpoint.family]
        if ip.waiters or (ip.inflight and not ip.answered) or not ip.fits(ip_weight, now):
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

    def _grantable(self, waiter: Waiter, now: float) -> bool:
        banned = self._banned_until
        for bucket, weight in zip(waiter.buckets, waiter.weights, strict=True):
            if bucket.waiters and bucket.waiters[0] is not waiter:
                return False  # first come, first served
            if bucket.closed_until > now or banned[bucket.family] > now:
                return False
            if not bucket.answered and bucket.inflight:
                return False  # the first answer tells what others spend: wait for it
            if not bucket.fits(weight, now):
                return False
        return True

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
            second = self._ip[endpoint.family]  # a UID call's answer reports the IP weight too
            second.expire(now)
        else:
            gone = first.gone_total
            alone = (first.held + first.inflight + gone, first.finished_total, gone)
            return Permit(self, endpoint, account, buckets, weights, alone)
        gone, gone2 = first.gone_total, second.gone_total
        marks = (
            first.held + first.inflight + gone,
            first.finished_total,
            gone,
            second.held + second.inflight + gone2,
            second.finished_total,
            gone2,
        )
        return Permit(self, endpoint, account, buckets, weights, marks)

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
                if self._grantable(waiter, now):
                    granted = True
                    for bucket in waiter.buckets:
                        bucket.waiters.popleft()  # type: ignore[union-attr]
                    return self._grant(endpoint, account, waiter.buckets, waiter.weights, now)
                wake_at = self._wake_time(waiter, now)
                if wake_at is not None and wake_at > deadline:
                    raise self._too_late(endpoint, account, waiter, now, wake_at)
                if now >= deadline:
                    raise self._too_late(endpoint, account, waiter, now, None)
                waiter.event = anyio.Event()
                with anyio.move_on_after((wake_at if wake_at is not None else deadline) - now):
                    await waiter.event.wait()
        finally:
            if not granted:
                for bucket in waiter.buckets:
                    if bucket.waiters is not None and waiter in bucket.waiters:
                        bucket.waiters.remove(waiter)
            self._wake(waiter.buckets)

    def _wake_time(self, waiter: Waiter, now: float) -> float | None:
        """The earliest moment the waiter could go, or ``None`` if only an event can tell."""
        latest = now
        for bucket, weight in zip(waiter.buckets, waiter.weights, strict=True):
            shut = max(bucket.closed_until, self._banned_until[bucket.family])
            if shut > now:
                latest = max(latest, shut)
                continue
            if bucket.waiters and bucket.waiters[0] is not waiter:
                return None  # a waiter ahead goes first; its going wakes this one
            if not bucket.answered and bucket.inflight:
                return None  # the first answer comes first; it wakes this one
            room_at = bucket.time_until_room(weight, now)
            if room_at is None:
                return None  # in-flight or external weight must come back first
            latest = max(latest, room_at)
        return latest

    def _wake(self, buckets: tuple[Bucket, ...]) -> None:
        for bucket in buckets:
            head = bucket.head()
            if head is not None and head.event is not None:
                head.event.set()

    def _too_late(
        self,
        endpoint: Endpoint[Any],
        account: str,
        waiter: Waiter,
        now: float,
        wake_at: float | None,
    ) -> Exception:
        masked = mask_key(account) if account else None
        wait = None if wake_at is None else wake_at - now
        for bucket in waiter.buckets:
            banned = self._banned_until[bucket.family] - now
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
            f"no room in the rate-limit budget ({', '.join(b.name for b in waiter.buckets)}) "
            "before the call's deadline",
            endpoint=endpoint.label,
            api_key=masked,
            retry_after=wait,
        )

    # -- learning from answers ---------------------------------------------------------------

    def _learn(self, permit: Permit, headers: Mapping[str, str], now: float) -> None:
        """Learn from the weight the exchange reports, in two ways.

        Outside weight: what it counts beyond ours is held as ``external``. Ours, as the
        exchange saw it when this request arrived, is taken to be what went out before it and
        is still held. A request that went out later but overtook this one makes the estimate
        a little high; one that went out earlier but arrived later, a little low.

        With outside weight, the estimate is not enough: the other party's spending grows
        between answers, requests sent together arrive in any order, and when the exchange
        counts in fixed windows, our held weight from before its window's start hides outside
        weight until it expires. So the count itself bounds what may follow: the reported
        weight, plus all of ours that may have arrived after this request (whatever was in
        flight when it went out, or went out since), stays under the limit; there, only an
        answer, not an expiry, makes room. With nothing in flight, one request goes to ask.
        Without outside weight our own count is the stricter of the two, so this costs no
        budget.
        """
        reported = used_weights(headers, permit.endpoint.family)
        if not reported:
            return
        until = now + self.window
        for bucket, weight, (granted, finished, gone) in permit._reported():
            used = reported.get("uid" if bucket.name.startswith("sapi_uid") else "ip")
            if used is None:
                continue
            bucket.expire(now)
            gone_now = bucket.gone_total
            # Ours it counted: what went out before this request, less what is gone since.
            outside = used - (granted - gone_now)
            bucket.report(outside, now, until)
            # All ours it could have counted: what was held when this request went out, and
            # all let out since. Beyond that, others spend too; kept a window longer than
            # seen, since in fixed windows our weight from before the window's start hides
            # theirs for most of the next.
            if outside > 0:
                shared = now < bucket.shared_until
                bucket.outside_peak = max(bucket.outside_peak, outside) if shared else outside
            if used > bucket.held + bucket.inflight + gone_now - gone:
                bucket.shared_until = until + self.window
            # Ours that may have arrived after it: in flight now, or finished since it went
            # out (itself aside): ``confirmed + inflight + finished_total`` with this.
            bucket.confirmed = used - weight - finished
            bucket.confirmed_at = now
            bucket.confirmed_until = until
            if bucket not in permit.buckets:
                # Its waiter waits for an answer, or timed itself by the old estimate (the
                # permit's own buckets are woken when it completes).
                self._wake((bucket,))

    def _close(
        self, permit: Permit, status: int, headers: Mapping[str, str] | None, now: float
    ) -> None:
        retry_after = retry_after_seconds(headers)
        wait = retry_after if retry_after is not None else self.window
        wait = min(max(wait, min(MIN_SHUT, self.window / 10)), LONGEST_BAN)
        family = permit.endpoint.family
        self._shut_until = max(self._shut_until, now + wait)
        if status == 418:
            self._banned_until[family] = max(self._banned_until[family], now + wait)
            buckets: tuple[Bucket, ...] = (self._ip[family],)
        else:
            buckets = (self._refused_bucket(permit, headers),)
            if buckets[0].name == "sapi_ip" and permit.endpoint.bucket == "uid":
                # Refused for IP weight: the exchange charges UID calls IP weight too.
                self.sapi_uid_ip_weight = max(self.sapi_uid_ip_weight, permit.endpoint.weight)
        for bucket in buckets:
            bucket.rejections += 1
            # Shut until Retry-After. What the 429's own headers taught (``_learn`` ran first)
            # stays for the window, so the bucket does not reopen into the same wall.
            bucket.closed_until = max(bucket.closed_until, now + wait)
            bucket.external_until = max(bucket.external_until, now + self.window)
            bucket.cautious_until = now + self.window
            bucket.shared_until = max(bucket.shared_until, now + 2 * self.window)
            self._wake((bucket,))

    def _refused_bucket(self, permit: Permit, headers: Mapping[str, str] | None) -> Bucket:
        if len(permit.buckets) == 1 and permit.endpoint.bucket == "ip":
            return permit.buckets[0]
        uid = next(b for b in permit.buckets if b.name.startswith("sapi_uid"))
        reported = used_weights(headers or {}, "sapi")
        ip = self._ip["sapi"]
        if reported.get("uid", 0) < uid.limit and reported.get("ip", 0) >= ip.limit:
            return ip
        return uid

    def reopen(self, budget: str | None = None) -> None:
        """Open a budget that a 429 or 418 holds shut, now: ``"papi_ip"``, ``"sapi_uid:…"``
        (as :meth:`snapshot` names them), a family (``"papi"``) for its ban, or ``None`` for
        every budget. For when you know better than the exchange's ``Retry-After`` (a ban
        lifted by support, say); calls waiting for it go on at once.

        Raises ``KeyError`` for a name no budget has. With a shared ``store`` this opens this
        process's view only; the store's own shut keys lapse at their time.
        """
        buckets = [*self._ip.values(), *self._uid.values()]
        if budget is not None:
            chosen = [b for b in buckets if budget in (b.name, b.family)]
            if not chosen:
                raise KeyError(f"no budget named {budget!r}; see Governor.snapshot()")
            buckets = chosen
        for bucket in buckets:
            bucket.closed_until = 0.0
            if budget is None or budget in (bucket.family, f"{bucket.family}_ip"):
                self._banned_until[bucket.family] = 0.0
        every = [*self._ip.values(), *self._uid.values()]
        self._shut_until = max(
            [0.0, *self._banned_until.values(), *(b.closed_until for b in every)]
        )
        self._wake(tuple(buckets))

    # -- looking ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, BucketState]:
        """Every budget now, by name: ``"api_ip"`` … ``"fapi_ip"``, ``"sapi_uid:vmPU…h8A"`` …"""
        now = self._clock()
        states = {}
        for bucket in [*self._ip.values(), *self._uid.values()]:
            used = bucket.used(now)
            shut = max(bucket.closed_until, self._banned_until[bucket.family]) - now
            states[bucket.name] = BucketState(
                limit=bucket.limit,
                used=used,
                external=bucket.external,
                waiters=len(bucket.waiters or ()),
                rejections=bucket.rejections,
                resets_in=max(0.0, bucket.resets_at(now) - now),
                closed_for=max(0.0, shut),
            )
        return states

    def __repr__(self) -> str:
        now = self._clock()
        parts = [
            f"{b.name} {b.used(now)}/{b.limit}"
            + (f" ({len(b.waiters)} waiting)" if b.waiters else "")
            for b in self._ip.values()
        ]
        return (
            f"Governor(window={self.window:g}s, {', '.join(parts)}, {len(self._uid)} UID buckets)"
        )

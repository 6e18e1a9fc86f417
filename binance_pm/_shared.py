"""A governor's budgets kept in a store that many processes share (``binance_pm.redis``).

Each acquire is one round trip to the store, which charges every budget a call needs, or none.
Within this process calls wait first come, first served: a lock per budget, taken in one
order, held while the head call asks the store again; they wake when the store says room may
come, or when one of this process's requests is settled. A request's answer is told to the
store after the call (:meth:`StorePermit.settle`), so that every process learns from it.

A circuit breaker (:class:`~binance_pm._breaker.Breaker`, a state machine with no I/O) keeps a
store that fails from costing every call its timeout: after a failure (an error, or no answer in
time) the store is taken for down, and no call asks it until the next probe, which is one call's
own charge, at most one at a time, at a rate that falls with what a failure costs. Meanwhile
calls count in this process (``on_store_error="local"``), or wait for the store and end in
:class:`GovernorUnavailable` just before their deadline (the default): nothing is sent unless a
store counted it. This module does the waiting, the waking and the logging the breaker calls
for. No task of its own: nothing to leak.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import anyio

from ._breaker import FAIR_TRY, SHORT, Breaker, Probe, Step
from ._buckets import Bucket
from ._endpoints import Endpoint
from ._exceptions import GovernorTimeout, GovernorUnavailable, mask_key
from ._headers import used_weights
from ._hook import SharedCount, Store, StoreError
from ._learning import refused_kind, reports_ip_too, shut_seconds
from ._limits import Budget
from ._states import BucketState

log = logging.getLogger("binance_pm")


class FallBack(Exception):
    """The store failed and the governor counts in this process instead."""


class StorePermit:
    """Weight reserved in a shared store for one request; settled there after the answer.

    ``cancel`` and ``complete`` only note what became of the request; the Session then awaits
    :meth:`settle`, which tells the store (one round trip), so that every process learns from
    the answer. If the store cannot be told (or is taken for down, and the answer is not a 429
    or 418), the request's weight lapses there by itself.
    """

    __slots__ = (
        "_outcome",
        "_shared",
        "account",
        "budgets",
        "deadline",
        "endpoint",
        "keys",
        "member",
    )

    def __init__(
        self,
        shared: SharedBudgets,
        endpoint: Endpoint[Any],
        account: str,
        keys: tuple[Budget, ...],
        budgets: list[tuple[str, int, int]],
        member: str,
        deadline: float,
    ) -> None:
        self._shared = shared
        self.keys = keys
        self.deadline = deadline  # its call's, on anyio's clock: settling ends before it
        self.endpoint = endpoint
        self.account = account
        self.budgets = budgets
        self.member = member
        self._outcome: tuple[int | None, Mapping[str, str] | None] | str | None = None

    def cancel(self) -> None:
        if self._outcome is None:
            self._outcome = "cancelled"

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        if self._outcome is None:
            self._outcome = (status, headers)

    async def settle(self) -> None:
        outcome, self._outcome = self._outcome, "settled"
        shared = self._shared
        store = shared.store
        if outcome in (None, "settled"):
            return
        refused = isinstance(outcome, tuple) and outcome[0] in (429, 418)
        if shared.down and not refused:  # it would time out: the weight lapses by itself
            shared.settled()
            return
        started = anyio.current_time()
        # A store that hangs must not hold the call's answer past its deadline.
        allowed = max(self.deadline - SHORT - started, FAIR_TRY)
        try:
            with anyio.move_on_after(allowed) as scope:
                await self._tell(store, outcome)
            if scope.cancelled_caught:
                raise StoreError(f"no answer within {allowed:.3g} s")
        except StoreError as exc:
            log.warning("the rate-limit store was not told of an answer (%s)", exc)
            shared.failed(exc, cost=anyio.current_time() - started)
        finally:
            shared.settled()

    async def _tell(
        self, store: Store, outcome: tuple[int | None, Mapping[str, str] | None] | str
    ) -> None:
        """One round trip: the request never left, or its answer."""
        shared, budgets = self._shared, self.budgets
        if not isinstance(outcome, tuple):  # cancelled
            await store.cancel([(name, weight) for name, weight, _ in budgets], member=self.member)
            return
        status, headers = outcome
        reported = used_weights(headers, self.endpoint.family) if headers else {}
        names = [name for name, _, _ in budgets]
        report = [
            (name, weight, reported.get(key.kind))
            for key, (name, weight, _) in zip(self.keys, budgets, strict=True)
        ]
        if reports_ip_too(self.endpoint, len(names)):
            scope = "" if shared.sapi_scope == "family" else self.endpoint.name
            report.append((Budget("sapi", "ip", scope).store_name, 0, reported.get("ip")))
        wait = shut_seconds(headers, shared.window)
        shut_name = names[0] if status == 429 else None
        if status == 429 and len(names) == 2:
            uid_limit, ip_limit = budgets[0][2], budgets[1][2]
            if refused_kind(reported, uid_limit, ip_limit) == "ip":
                shut_name = names[1]
        if shut_name is not None:
            shared.rejections[shut_name] += 1
        await store.finish(
            [(name, weight, used, name == shut_name) for name, weight, used in report],
            family=self.endpoint.family,
            member=self.member,
            window=shared.window,
            shut=wait if status == 429 else 0.0,
            ban=wait if status == 418 else 0.0,
        )


class SharedBudgets:
    """The store, and what this process keeps about it: a lock per budget, the event its
    waiters sleep on, and the circuit breaker (whether the store is taken for down, and when
    it is tried again), on anyio's clock."""

    def __init__(
        self, store: Store, window: float, *, fall_back: bool, sapi_scope: str = "family"
    ) -> None:
        self.sapi_scope = sapi_scope  # which IP budget a UID call's answer reports on
        self.store = store
        self.window = window
        self.rejections: Counter[str] = Counter()  # 429s this process saw, by store name
        self._locks: dict[str, anyio.Lock] = {}
        self._changed: anyio.Event | None = None
        # On a store failure, count in process (with a warning), or wait for it and fail closed.
        self.breaker = Breaker(anyio.current_time, fall_back=fall_back)
        self._news: anyio.Event | None = None  # wakes those who wait for the breaker to change

    @property
    def fall_back(self) -> bool:
        """Whether calls count in this process while the store is down."""
        return self.breaker.fall_back

    @property
    def down(self) -> bool:
        """Whether the store is taken for down (the breaker is open)."""
        return self.breaker.down

    async def acquire(
        self,
        endpoint: Endpoint[Any],
        account: str,
        deadline: float,
        buckets: tuple[Bucket, ...],
        weights: tuple[int, ...],
    ) -> StorePermit:
        """Charge the store for ``buckets`` (this process's, for their names and limits),
        waiting first come, first served within this process; ``deadline`` on anyio's clock.
        Raises :class:`FallBack` when the store fails and this process may count alone."""
        keys = tuple(b.key for b in buckets)
        shared = [(b.key.store_name, w, b.limit) for b, w in zip(buckets, weights, strict=True)]
        while True:
            probe = await self._turn(endpoint, account, deadline)
            try:
                permit = await self._in_turn(endpoint, account, deadline, keys, shared, probe)
            except StoreError:
                if self.fall_back:
                    raise FallBack from None
                continue  # wait for the store, as the breaker says
            finally:
                if probe is not None and self.breaker.release(probe):
                    self._tell()
            if permit is not None:
                return permit

    async def _turn(self, endpoint: Endpoint[Any], account: str, deadline: float) -> Probe | None:
        """Wait until this call may ask the store, as the breaker says: ``None`` when it is up,
        a :class:`Probe` when this call tries whether it is back. Raises :class:`FallBack`, or
        :class:`GovernorUnavailable` just before the deadline."""
        while True:
            step, until = self.breaker.step(deadline - SHORT)
            if step is Step.ASK:
                return None
            if step is Step.PROBE:
                return self.breaker.claim()  # released by the caller, in a finally
            if step is Step.FALL_BACK:
                raise FallBack
            if step is Step.FAIL:
                raise self._unavailable(endpoint, account, self.breaker.error)
            if self._news is None:
                self._news = anyio.Event()
            news = self._news
            with anyio.move_on_after(until - anyio.current_time()):
                await news.wait()

    async def _in_turn(
        self,
        endpoint: Endpoint[Any],
        account: str,
        deadline: float,
        keys: tuple[Budget, ...],
        shared: list[tuple[str, int, int]],
        probe: Probe | None,
    ) -> StorePermit | None:
        """In this process's line for the budgets, ask the store until it charges them.
        ``None`` when the breaker opened while this call waited in line."""
        store = self.store
        member = store.member()
        locks = [self._locks.setdefault(name, anyio.Lock()) for name, _, _ in shared]
        ordered = sorted(set(locks), key=id)  # one order everywhere: no deadlock
        async with contextlib.AsyncExitStack() as held:
            entered = 0
            with anyio.move_on_after(deadline - SHORT - anyio.current_time()):
                for lock in ordered:
                    await held.enter_async_context(lock)
                    entered += 1
            if entered < len(ordered):  # the deadline came first
                if not self.breaker.down:
                    raise self._no_room(endpoint, account, keys, None)
                if self.breaker.give_up() is Step.FALL_BACK:
                    raise FallBack
                raise self._unavailable(endpoint, account, self.breaker.error)
            while True:
                if self.breaker.down and probe is None:
                    return None
                now = anyio.current_time()
                allowed = self.breaker.allowed(deadline)
                hold = max(deadline - now, 0.0) + self.window
                answered = False
                with anyio.move_on_after(allowed):
                    try:
                        wait = await store.charge(
                            shared,
                            family=endpoint.family,
                            member=member,
                            hold=hold,
                            window=self.window,
                        )
                        answered = True
                    except StoreError as exc:
                        self.failed(exc, cost=anyio.current_time() - now, probe=probe)
                        raise
                if not answered:
                    cut = StoreError(f"no answer within {allowed:.3g} s")
                    if allowed >= FAIR_TRY:
                        self.failed(cut, cost=anyio.current_time() - now, probe=probe)
                    elif not self.fall_back:
                        raise self._unavailable(endpoint, account, cut)
                    raise cut
                self._up()
                probe = None  # the store is back: this call is one like the others
                if wait == 0.0:
                    return StorePermit(self, endpoint, account, keys, shared, member, deadline)
                if now + wait >= deadline:
                    raise self._no_room(endpoint, account, keys, wait)
                if self._changed is None:
                    self._changed = anyio.Event()
                changed = self._changed
                with anyio.move_on_after(wait):
                    await changed.wait()

    def failed(self, exc: StoreError, *, cost: float, probe: Probe | None = None) -> None:
        """The store failed, after ``cost`` seconds: the breaker opens (with a warning, once
        per opening), or stays open and says when to try it again."""
        if self.breaker.failed(exc, cost=cost, probe=probe):
            if self.fall_back:
                then = "this process counts its own weight alone until it is back"
            else:
                then = "calls wait for it, and fail at their deadline, nothing sent"
            log.warning("the rate-limit store failed (%s): %s", exc, then)

    def _up(self) -> None:
        """The store answered: the breaker closes."""
        if self.breaker.answered():
            log.info("the rate-limit store answers again")
            self._tell()

    def _tell(self) -> None:
        news, self._news = self._news, None
        if news is not None:
            news.set()

    def settled(self) -> None:
        """A request of this process finished or was given back: waiters here try again."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def snapshot(self, buckets: list[Bucket]) -> dict[str, BucketState]:
        """``buckets`` as the store counts them (the weight of every process), by their names
        here."""
        store_names = [b.key.store_name for b in buckets]
        families = sorted({b.family for b in buckets})
        try:
            if self.breaker.error is not None:
                raise self.breaker.error
            counts, bans = await self.store.read(store_names, families=families)
        except StoreError as exc:
            raise GovernorUnavailable(
                f"the rate-limit store could not be read ({exc})", endpoint="Governor.asnapshot"
            ) from None
        states: dict[str, BucketState] = {}
        for bucket, name, count in zip(buckets, store_names, counts, strict=True):
            lock = self._locks.get(name)
            states[bucket.name] = _state(
                bucket.limit,
                count,
                waiters=lock.statistics().tasks_waiting if lock is not None else 0,
                rejections=self.rejections[name],
                banned_for=bans[bucket.family],
                kind=bucket.kind,
            )
        return states

    @staticmethod
    def _unavailable(
        endpoint: Endpoint[Any], account: str, exc: StoreError | None
    ) -> GovernorUnavailable:
        return GovernorUnavailable(
            f"the rate-limit store could not be reached ({exc or 'down'}); nothing was sent",
            endpoint=endpoint.label,
            api_key=mask_key(account) if account else None,
        )

    @staticmethod
    def _no_room(
        endpoint: Endpoint[Any],
        account: str,
        keys: tuple[Budget, ...],
        wait: float | None,
    ) -> GovernorTimeout:
        return GovernorTimeout(
            "no room in the shared rate-limit budget "
            f"({', '.join(key.limit for key in keys)}) "
            "before the call's deadline",
            endpoint=endpoint.label,
            api_key=mask_key(account) if account else None,
            retry_after=wait,
        )


def _state(
    limit: int,
    count: SharedCount,
    *,
    waiters: int,
    rejections: int,
    banned_for: float,
    kind: str,
) -> BucketState:
    return BucketState(
        limit=limit,
        used=count.held + count.external,
        external=count.external,
        waiters=waiters,
        rejections=rejections,
        resets_in=count.resets_in,
        closed_for=max(count.closed_for, banned_for),
        kind=kind,
    )

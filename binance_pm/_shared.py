"""A governor's budgets kept in a store that many processes share (``binance_pm.redis``).

Each acquire is one round trip to the store, which charges every budget a call needs, or none.
Within this process calls wait first come, first served: a lock per budget, taken in one
order, held while the head call asks the store again; they wake when the store says room may
come, or when one of this process's requests is settled. A request's answer is told to the
store after the call (:meth:`StorePermit.settle`), so that every process learns from it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import anyio

from ._buckets import Bucket
from ._endpoints import Endpoint
from ._exceptions import GovernorTimeout, GovernorUnavailable, mask_key
from ._headers import used_weights
from ._hook import Store, StoreError
from ._learning import kind_of, refused_kind, reports_ip_too, shut_seconds
from ._retry import backoff

log = logging.getLogger("binance_pm")


class FallBack(Exception):
    """The store failed and the governor counts in this process instead."""


class StorePermit:
    """Weight reserved in a shared store for one request; settled there after the answer.

    ``cancel`` and ``complete`` only note what became of the request; the Session then awaits
    :meth:`settle`, which tells the store (one round trip), so that every process learns from
    the answer. If the store cannot be told, the request's weight lapses there by itself.
    """

    __slots__ = ("_outcome", "_shared", "account", "budgets", "endpoint", "member")

    def __init__(
        self,
        shared: SharedBudgets,
        endpoint: Endpoint[Any],
        account: str,
        budgets: list[tuple[str, int, int]],
        member: str,
    ) -> None:
        self._shared = shared
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
        try:
            if outcome == "cancelled":
                await store.cancel(
                    [(name, weight) for name, weight, _ in self.budgets], member=self.member
                )
                return
            assert isinstance(outcome, tuple)
            status, headers = outcome
            reported = used_weights(headers, self.endpoint.family) if headers else {}
            names = [name for name, _, _ in self.budgets]
            report = [
                (name, weight, reported.get(kind_of(name))) for name, weight, _ in self.budgets
            ]
            if reports_ip_too(self.endpoint, len(names)):
                report.append(("sapi_ip", 0, reported.get("ip")))
            wait = shut_seconds(headers, shared.window)
            shut_name = names[0] if status == 429 else None
            if status == 429 and len(names) == 2:
                uid_limit, ip_limit = self.budgets[0][2], self.budgets[1][2]
                if refused_kind(reported, uid_limit, ip_limit) == "ip":
                    shut_name = names[1]
            await store.finish(
                [(name, weight, used, name == shut_name) for name, weight, used in report],
                family=self.endpoint.family,
                member=self.member,
                window=shared.window,
                shut=wait if status == 429 else 0.0,
                ban=wait if status == 418 else 0.0,
            )
        except StoreError as exc:
            log.warning("the rate-limit store was not told of an answer (%s)", exc)
        finally:
            shared.settled()


class SharedBudgets:
    """The store, and what this process keeps about it: a lock per budget, the event its
    waiters sleep on, whether it has warned of a failure."""

    def __init__(self, store: Store, *, window: float, fall_back: bool) -> None:
        self.store = store
        self.window = window
        self.fall_back = fall_back  # on a store failure, count in process (with a warning)
        self._locks: dict[str, anyio.Lock] = {}
        self._changed: anyio.Event | None = None
        self._warned = False

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
        store = self.store
        shared = [
            (f"sapi_uid:{account}" if b.name.startswith("sapi_uid") else b.name, w, b.limit)
            for b, w in zip(buckets, weights, strict=True)
        ]
        member = store.member()
        locks = [self._locks.setdefault(name, anyio.Lock()) for name, _, _ in shared]
        failures = 0
        async with contextlib.AsyncExitStack() as held:
            for lock in sorted(set(locks), key=id):  # one order everywhere: no deadlock
                await held.enter_async_context(lock)
            while True:
                now = anyio.current_time()
                hold = max(deadline - now, 0.0) + self.window
                try:
                    wait = await store.charge(
                        shared,
                        family=endpoint.family,
                        member=member,
                        hold=hold,
                        window=self.window,
                    )
                    failures = 0
                except StoreError as exc:
                    if self.fall_back:
                        if not self._warned:
                            self._warned = True
                            log.warning(
                                "the rate-limit store failed (%s): this process counts "
                                "its own weight alone until it is back",
                                exc,
                            )
                        raise FallBack from None
                    failures += 1
                    # Tried again until the deadline, the last time at it.
                    wait = min(backoff(failures - 1, base=0.1, ceiling=1.0), deadline - now)
                    if wait <= 0:
                        raise GovernorUnavailable(
                            f"the rate-limit store could not be reached ({exc}); nothing was sent",
                            endpoint=endpoint.label,
                            api_key=mask_key(account) if account else None,
                        ) from None
                else:
                    if wait == 0.0:
                        self._warned = False
                        return StorePermit(self, endpoint, account, shared, member)
                    if now + wait >= deadline:
                        raise GovernorTimeout(
                            "no room in the shared rate-limit budget "
                            f"({', '.join(name.split(':')[0] for name, _, _ in shared)}) "
                            "before the call's deadline",
                            endpoint=endpoint.label,
                            api_key=mask_key(account) if account else None,
                            retry_after=wait,
                        )
                if self._changed is None:
                    self._changed = anyio.Event()
                changed = self._changed
                with anyio.move_on_after(wait):
                    await changed.wait()

    def settled(self) -> None:
        """A request of this process finished or was given back: waiters here try again."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

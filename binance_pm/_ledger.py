"""The governor's books: every budget it keeps, the bans, and what answers teach them.

A :class:`~binance_pm.Governor` decides when a request goes and makes the others wait; what it
knows is kept here. Budgets: one IP bucket per API family (or per sapi endpoint, with
``sapi_scope="endpoint"``) shared by every account, and one UID bucket per account for the
UID-weighted SAPI endpoints; weights come from the endpoint table. A 429 shuts its bucket and a
418 bans its whole family until ``Retry-After``, for every account.

:meth:`Ledger.grantable` is the one rule for letting a request out, for the governor's fast path
and its waiters alike. A permit tells the ledger what became of its request through public
methods: :meth:`Ledger.learn` (the used-weight headers of its answer) and
:meth:`Ledger.refused` (a 429 or 418).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._buckets import Bucket, Waiter
from ._endpoints import ENDPOINTS, Endpoint
from ._headers import used_weights
from ._learning import UidCost, refused_kind, shut_seconds
from ._limits import FAMILIES, Budget, Limits
from ._permit import LocalPermit

#: The budgets one call takes, and the weight it takes from each.
Plan = tuple[tuple[Bucket, ...], tuple[int, ...]]


def checked(label: str, plan: Plan) -> Plan:
    """``plan``, if each weight fits its budget's limit at all; else ``ValueError``."""
    for bucket, weight in zip(*plan, strict=True):
        if weight > bucket.limit:
            raise ValueError(
                f"{label} weighs {weight}, more than the {bucket.name} limit of "
                f"{bucket.limit} per window: it could never be sent"
            )
    return plan


class Ledger:
    """Every budget of one governor, and what the exchange's answers said of them.

    Args:
        limits: the weight per window of each budget, before ``headroom``.
        window: seconds per window.
        headroom: share of each limit left unused.
        sapi_scope: ``"family"`` (one sapi IP budget) or ``"endpoint"`` (one per endpoint).
        sapi_uid_ip_weight: IP weight charged for each UID call until more is learned.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        window: float,
        headroom: float,
        sapi_scope: str,
        sapi_uid_ip_weight: int,
        clock: Callable[[], float],
    ) -> None:
        self.clock = clock
        self.window = window
        self.headroom = headroom
        self.sapi_scope = sapi_scope
        #: IP weight charged for each UID-weighted SAPI call: given, or learned.
        self.sapi_uid_ip_weight = sapi_uid_ip_weight
        self.uid_limit = self.effective(limits.sapi_uid)
        self.ip: dict[str, Bucket] = {}
        for family in FAMILIES:
            key = Budget(family, "ip")
            self.ip[family] = Bucket(key, self.effective(limits[key.limit]), window)
        self.by_endpoint: dict[str, Bucket] = {}  # sapi_scope="endpoint": sapi IP budgets
        for endpoint in ENDPOINTS.values():
            self.ip_of(endpoint)  # made now, so that snapshots show each
        self.uid: dict[str, Bucket] = {}  # by API key
        self._uid_names: dict[int, int] = {}  # masked key's hash -> accounts that mask alike
        # Each family's ban; "ws", stream connection attempts, is banned with any of them.
        self.banned_until: dict[str, float] = dict.fromkeys((*FAMILIES, "ws"), 0.0)
        #: No bucket is closed and no family banned before this: the rule looks no further.
        self.shut_until = 0.0
        self._uid_cost = UidCost()
        self._ip_plans: dict[str, Plan] = {}
        self._uid_ip_plans: dict[str, tuple[Bucket, tuple[int, int]]] = {}

    def effective(self, limit: int) -> int:
        """``limit`` less the headroom (at least 1)."""
        return max(1, math.floor(limit * (1 - self.headroom)))

    def ip_of(self, endpoint: Endpoint[Any]) -> Bucket:
        """The IP budget ``endpoint``'s calls are counted on (and a UID call's answer reports)."""
        if self.sapi_scope == "family" or endpoint.family != "sapi":
            return self.ip[endpoint.family]
        bucket = self.by_endpoint.get(endpoint.name)
        if bucket is None:
            family = self.ip["sapi"]
            key = Budget("sapi", "ip", endpoint.name)
            bucket = self.by_endpoint[endpoint.name] = Bucket(key, family.limit, self.window)
        return bucket

    def budgets(self) -> list[Bucket]:
        """Every budget, as snapshots show them."""
        ip = [b for f, b in self.ip.items() if f != "sapi" or self.sapi_scope == "family"]
        return [*ip, *self.by_endpoint.values(), *self.uid.values()]

    # -- granting ----------------------------------------------------------------------------

    def plan(self, endpoint: Endpoint[Any], account: str) -> Plan:
        """The buckets and weights one call of ``endpoint`` for ``account`` takes (a new
        account's UID budget is made). A weight that can never fit its budget never passes
        the rule; :func:`checked` tells why."""
        if endpoint.bucket == "ip":
            plan = self._ip_plans.get(endpoint.name)
            if plan is None:
                plan = ((self.ip_of(endpoint),), (endpoint.weight,))
                self._ip_plans[endpoint.name] = checked(endpoint.label, plan)
            return plan
        uid = self.uid.get(account)
        if uid is None:
            key = endpoint.budget_for(account)
            uid = self.uid[account] = Bucket(
                key, self.uid_limit, self.window, label=self._uid_label(key)
            )
        # Not cached: a plan per account would cost more memory than making it costs time.
        ip_weight = self.sapi_uid_ip_weight
        if ip_weight:
            ip, weights = self._uid_ip_plans.get(endpoint.name) or self._uid_ip_plan(endpoint)
            if weights[1] != ip_weight:  # learned since: a higher IP weight
                ip, weights = self._uid_ip_plan(endpoint)
            return (uid, ip), weights
        return (uid,), (endpoint.weight,)

    def _uid_ip_plan(self, endpoint: Endpoint[Any]) -> tuple[Bucket, tuple[int, int]]:
        """The IP budget and weights of a UID call that takes IP weight too."""
        plan = self._uid_ip_plans[endpoint.name] = (
            self.ip_of(endpoint),
            (endpoint.weight, self.sapi_uid_ip_weight),
        )
        return plan

    def _uid_label(self, key: Budget) -> str | None:
        """``None`` (its key names it: ``sapi_uid:`` and the masked key), or, for the second
        and later keys that mask alike, that name with ``#2``, ``#3``…"""
        shown = key.shown
        mask = hash(shown)  # an int, not the string, kept for every account
        count = self._uid_names[mask] = self._uid_names.get(mask, 0) + 1
        return None if count == 1 else f"{shown}#{count}"

    def grantable(
        self,
        buckets: tuple[Bucket, ...],
        weights: tuple[int, ...],
        now: float,
        waiter: Waiter | None = None,
    ) -> bool:
        """The rule: whether a request may take ``weights`` of ``buckets`` now. None of them
        shut by a 429 nor banned by a 418, and each can take its weight
        (:meth:`Bucket.can_take`: nobody ahead of ``waiter`` in its queue, and room)."""
        if now < self.shut_until:
            banned = self.banned_until
            for bucket in buckets:
                if bucket.closed_until > now or banned[bucket.family] > now:
                    return False
        if not buckets[0].can_take(weights[0], now, waiter):
            return False
        return len(buckets) == 1 or buckets[1].can_take(weights[1], now, waiter)

    def grant(
        self,
        endpoint: Endpoint[Any],
        account: str,
        buckets: tuple[Bucket, ...],
        weights: tuple[int, ...],
        now: float,
    ) -> LocalPermit:
        """Take ``weights`` of ``buckets`` (the rule said yes) for one request."""
        first = buckets[0]
        if len(buckets) == 2:
            marks = first.take(weights[0], buckets[1], weights[1])
        elif endpoint.bucket == "uid":  # its answer reports the IP budget's count too
            ip = self.ip_of(endpoint)
            ip.count_uid_call(now)
            marks = first.take(weights[0], ip)
        else:
            marks = first.take(weights[0])
        return LocalPermit(self, endpoint, account, buckets, weights, marks)

    # -- what answers tell ---------------------------------------------------------------------

    def learn(self, permit: LocalPermit, headers: Mapping[str, str], now: float) -> None:
        """What an answer's used-weight headers say of each budget it reports on
        (:meth:`Bucket.learn`), and whether UID calls cost IP weight too."""
        reported = used_weights(headers, permit.endpoint.family)
        if not reported:
            return
        for bucket, weight, marks in permit.reported():
            used = reported.get(bucket.kind)
            if used is None:
                continue
            bucket.learn(used, weight, marks, now)
            if bucket not in permit.buckets:
                # Its waiter waits for an answer, or timed itself by the old estimate (the
                # permit's own buckets are woken when it completes).
                bucket.wake()
                # A UID call that took no IP weight: does the IP count grow with such calls?
                granted = bucket.held + bucket.inflight + bucket.gone_total
                weight = permit.endpoint.weight
                cost = self._uid_cost.learn(used, marks, permit.uid_calls, granted, weight)
                self.sapi_uid_ip_weight = max(self.sapi_uid_ip_weight, cost)

    def refused(
        self, permit: LocalPermit, status: int, headers: Mapping[str, str] | None, now: float
    ) -> None:
        """A 429 (or a 418) refused the permit's request: shut the budget it names (ban the
        family) until ``Retry-After``."""
        wait = shut_seconds(headers, self.window)
        endpoint = permit.endpoint
        self.shut_until = max(self.shut_until, now + wait)
        if status == 418:
            for banned in (endpoint.family, "ws"):  # no stream connects while the IP is banned
                self.banned_until[banned] = max(self.banned_until[banned], now + wait)
            bucket = self.ip_of(endpoint)
        elif endpoint.bucket == "ip":
            bucket = permit.buckets[0]
        else:  # a UID call: the headers tell whether its UID or the IP budget was refused
            uid, ip = permit.buckets[0], self.ip_of(endpoint)
            reported = used_weights(headers or {}, endpoint.family)
            bucket = uid if refused_kind(reported, uid.limit, ip.limit) == "uid" else ip
        if bucket.kind == "ip" and endpoint.bucket == "uid":
            # Refused for IP weight: the exchange charges UID calls IP weight too.
            self.sapi_uid_ip_weight = max(self.sapi_uid_ip_weight, endpoint.weight)
        bucket.shut(now, wait, ban=status == 418)
        bucket.wake()

    def ban(self, seconds: float) -> None:
        """Nothing goes out, in any family, for ``seconds``."""
        until = self.clock() + seconds
        for family, banned in self.banned_until.items():
            self.banned_until[family] = max(banned, until)
        self.shut_until = max(self.shut_until, until)

    def reopen(self, buckets: list[Bucket], budget: str | None, every: list[Bucket]) -> None:
        """Open ``buckets`` (and their family's ban, when ``budget`` names a family or its IP
        budget, or is ``None``); ``every`` is every bucket there is, to say what stays shut."""
        for bucket in buckets:
            bucket.reopen()
            if budget in (None, bucket.family, Budget(bucket.family, "ip").limit):
                self.banned_until[bucket.family] = 0.0
                self.banned_until["ws"] = 0.0
        shuts = [*self.banned_until.values(), *(b.closed_until for b in every)]
        self.shut_until = max(shuts, default=0.0)
        for bucket in buckets:
            bucket.wake()

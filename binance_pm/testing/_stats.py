"""What the simulated exchange saw: requests, answers, weight per budget and per window."""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ARRIVALS_KEPT = 200_000


@dataclass
class ExchangeStats:
    """Counts kept by :class:`SimulatedExchange` as it answers.

    Attributes:
        requests: every request answered.
        by_status: requests per HTTP status.
        by_code: error answers per exchange code (``-1003``, ``-1021`` …).
        by_endpoint: requests per endpoint name.
        weight: weight counted per budget: ``"papi_ip"``, ``"sapi_ip"``, ``"sapi_uid"`` (all
            accounts together) …
        weight_by_window: per budget (``"papi_ip"``, ``"uid:acct-0001"`` …), weight counted in
            each fixed window of the server clock, by window number.
        faults: injected faults per kind.
        bans: 418 bans handed out.
        refused_by_window: per budget, 429s answered in each fixed window, by window number.
        max_concurrency: the most requests in handling at once.
        clients: the client addresses (host, port) seen: one per connection over TCP, stream
            connections included.
        arrivals: the latest (server ms, budget, weight) charges, oldest dropped past 200,000;
            every stream connection attempt is one, budget ``"ws_connect"`` and weight 1.
        ws_attempts: stream connection attempts (handshakes asked for), refused or not.
        ws_refused: of them, the ones answered 429 (too many attempts from the IP).
        ws_banned: of them, the ones answered 418 (the IP is banned).
        connections: stream connections accepted, per account name (a rotation is one more).
    """

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_code: Counter[int] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    weight: Counter[str] = field(default_factory=Counter)
    weight_by_window: defaultdict[str, Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter), repr=False
    )
    faults: Counter[str] = field(default_factory=Counter)
    bans: int = 0
    refused_by_window: defaultdict[str, Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter), repr=False
    )
    max_concurrency: int = 0
    clients: set[tuple[object, ...]] = field(default_factory=set, repr=False)
    in_flight: int = 0
    arrivals: deque[tuple[float, str, int]] = field(
        default_factory=lambda: deque(maxlen=ARRIVALS_KEPT), repr=False
    )
    ws_attempts: int = 0
    ws_refused: int = 0
    ws_banned: int = 0
    connections: Counter[str] = field(default_factory=Counter)

    def record(self, endpoint: str, status: int, code: int | None, fault: str | None) -> None:
        self.requests += 1
        self.by_status[status] += 1
        self.by_endpoint[endpoint] += 1
        if code is not None:
            self.by_code[code] += 1
        if fault is not None:
            self.faults[fault] += 1

    def charge(self, budget: str, weight: int, now_ms: float, window: float) -> None:
        """Count ``weight`` against ``budget`` (``"papi_ip"``, ``"uid:acct-0001"`` …)."""
        self.weight[limit_of(budget)] += weight
        self.weight_by_window[budget][int(now_ms // (window * 1000))] += weight
        self.arrivals.append((now_ms, budget, weight))

    def to_dict(self, *, arrivals: bool = False) -> dict[str, object]:
        """The counts as plain JSON-ready values (``GET /_sim/stats`` answers this)."""
        counts: dict[str, object] = {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "by_code": {str(k): v for k, v in self.by_code.items()},
            "by_endpoint": dict(self.by_endpoint),
            "weight": dict(self.weight),
            "weight_by_window": {
                budget: {str(k): v for k, v in windows.items()}
                for budget, windows in self.weight_by_window.items()
            },
            "faults": dict(self.faults),
            "bans": self.bans,
            "refused_by_window": {
                budget: {str(k): v for k, v in windows.items()}
                for budget, windows in self.refused_by_window.items()
            },
            "max_concurrency": self.max_concurrency,
            "ws_attempts": self.ws_attempts,
            "ws_refused": self.ws_refused,
            "ws_banned": self.ws_banned,
            "connections": dict(self.connections),
            "client_ips": sorted({str(client[0]) for client in self.clients}),
        }
        if arrivals:
            counts["arrivals"] = [list(entry) for entry in self.arrivals]
        return counts

    def most_in_any_window(self, window: float) -> dict[str, int]:
        """Per budget, the most weight counted in any interval of ``window`` seconds."""
        return most_in_any_window(self.arrivals, window)


def limit_of(budget: str) -> str:
    """The :class:`~binance_pm.Limits` field a budget of the exchange's counts against: its
    own name without the client IP (``"papi_ip@127.0.0.2"``: ``"papi_ip"``), or ``"sapi_uid"``
    for an account's UID budget (``"uid:<account>"``)."""
    return "sapi_uid" if budget.startswith("uid:") else budget.partition("@")[0]


def most_in_any_window(arrivals: Iterable[Sequence[Any]], window: float) -> dict[str, int]:
    """Per budget, the most weight within any interval of ``window`` seconds, from
    ``(server ms, budget, weight)`` charges (``ExchangeStats.arrivals``, or the ``arrivals`` of
    ``GET /_sim/stats?arrivals=1``)."""
    by_budget: dict[str, list[tuple[float, int]]] = {}
    for at, budget, weight in arrivals:
        by_budget.setdefault(budget, []).append((at, weight))
    most = {}
    for budget, charges in by_budget.items():
        charges.sort()
        best = total = start = 0
        for at, weight in charges:
            total += weight
            while charges[start][0] <= at - window * 1000:
                total -= charges[start][1]
                start += 1
            best = max(best, total)
        most[budget] = best
    return most


def budget_use(
    arrivals: Iterable[Sequence[Any]],
    limits: Mapping[str, int],
    *,
    window: float,
    started_ms: float,
    stopped_ms: float,
    uid_accounts: int = 0,
) -> tuple[dict[str, float], int]:
    """The share of each budget a run used, and over how many windows.

    From ``(server ms, budget, weight)`` charges: per budget of ``limits`` (``"papi_ip"`` …,
    and ``"sapi_uid"`` for all ``uid_accounts`` accounts' UID budgets together, at the limit
    of one), the weight counted in whole windows after the first (the opening burst's), over
    the limit in those windows: ``1.0`` is the whole budget. A run too short for that is
    measured whole, over the windows it touched.
    """
    window_ms = window * 1000
    windows = int((stopped_ms - started_ms) // window_ms) - 1
    if windows >= 1:
        since, until = started_ms + window_ms, started_ms + window_ms * (windows + 1)
    else:
        since, until = started_ms, stopped_ms
        windows = max(1, math.ceil((stopped_ms - started_ms) / window_ms))
    counted: dict[str, int] = {}
    for at, budget, weight in arrivals:
        if since <= at < until:
            name = limit_of(budget)
            counted[name] = counted.get(name, 0) + weight
    shares = {
        name: counted.get(name, 0) / (limit * (uid_accounts if name == "sapi_uid" else 1) * windows)
        for name, limit in limits.items()
        if name != "sapi_uid" or uid_accounts
    }
    return shares, windows

"""The simulated exchange's rate accounting: which budgets a request is charged to, and the
429s and bans (418) for those who go past them.

Each endpoint's family, weight and bucket come from the package's endpoint table; the budgets'
names are the exchange's own, as :class:`ExchangeStats` shows them: ``"papi_ip"`` (one IP limit
per family), ``"sapi_ip:<endpoint>"`` (one per sapi endpoint with ``sapi_scope="endpoint"``) and
``"uid:<account name>"`` (one per account, for UID-weighted endpoints). Every answer carries the
used-weight header of each budget it was charged to; every sapi answer the sapi IP weight.

Each client IP has IP limits, 429s and bans of its own, as on the exchange: every loopback
address (``127.0.0.2``, ``127.0.0.3`` …) is another IP. The IP budgets of requests from
``127.0.0.1`` (and in process) keep the names above; another IP's are named with it,
``"papi_ip@127.0.0.2"``. An account's UID budget is the account's, from whichever IP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .._endpoints import Endpoint
from .._limits import FAMILIES
from ._limits import Counter, Warden, retry_after_text
from ._messages import MSG, Answer, ban_text

if TYPE_CHECKING:
    from ._book import SimAccount
    from ._options import ExchangeOptions
    from ._stats import ExchangeStats

HEADER_IP = {"sapi": "X-SAPI-USED-IP-WEIGHT-1M"}
HEADER_UID = "X-SAPI-USED-UID-WEIGHT-1M"
HEADER_MBX = "X-MBX-USED-WEIGHT-1M"


#: The client IP whose budgets keep their plain names; an in-process request's.
DEFAULT_IP = "127.0.0.1"


class Origin:
    """One client IP: its IP limits (per family, or per sapi endpoint) and the warden of its
    429s and bans."""

    __slots__ = ("by_endpoint", "ip", "suffix", "warden")

    def __init__(self, address: str, ip: dict[str, Counter], warden: Warden) -> None:
        self.suffix = "" if address == DEFAULT_IP else f"@{address}"
        self.ip = ip
        self.by_endpoint: dict[str, Counter] = {}
        self.warden = warden


class Rates:
    """The weight counters and wardens of one simulated exchange, per client IP.

    It also holds what the stream door (:class:`~binance_pm.testing._doorman.Doorman`) needs to
    count connection attempts against the same bans: the limits, the window, the stats, each
    IP's warden and the server's clock.
    """

    def __init__(
        self,
        options: ExchangeOptions,
        stats: ExchangeStats,
        server_ms: Callable[[], int],
    ) -> None:
        self.options = options
        self.limits = options.limits
        self.window = options.window
        self.stats = stats
        self._server_ms = server_ms
        self._started_ms = server_ms()
        #: Each client IP's limits and warden, made when it first asks; the UID limit of each
        #: account, by API key, made when first charged.
        self._origins: dict[str, Origin] = {}
        self.uid: dict[str, Counter] = {}
        self._default = self.origin(DEFAULT_IP)

    @property
    def ip(self) -> dict[str, Counter]:
        """``127.0.0.1``'s IP limit of each family (a test may lift one by hand)."""
        return self._default.ip

    def origin(self, address: str) -> Origin:
        """The client IP ``address``'s limits and warden."""
        found = self._origins.get(address)
        if found is None:
            options = self.options
            ip: dict[str, Counter] = {
                family: Counter(
                    self.limits[f"{family}_ip"],
                    self.window * 1000.0,
                    options.window_mode,
                    external=options.external.get(family, 0.0),
                    started_ms=self._started_ms,
                )
                for family in FAMILIES
            }
            warden = Warden(
                options.ban_seconds if options.ban_seconds is not None else 2 * self.window,
                options.ban_grace if options.ban_grace is not None else min(1.0, self.window / 10),
                options.grace_requests,
            )
            found = self._origins[address] = Origin(address, ip, warden)
        return found

    def warden(self, address: str) -> Warden:
        """The client IP ``address``'s 429s and bans."""
        return self.origin(address).warden

    def server_ms(self) -> int:
        """The server's clock in milliseconds."""
        return self._server_ms()

    def refuse_if_banned(self, family: str, now: float, address: str = DEFAULT_IP) -> None:
        """418 while ``family`` is banned for the client IP ``address``."""
        until = self.origin(address).warden.banned_until(family, now)
        if until is not None:
            raise Answer(
                418,
                -1003,
                ban_text(until),
                {"Retry-After": retry_after_text((until - now) / 1000.0)},
            )

    def charge(
        self,
        endpoint: Endpoint[Any],
        account: SimAccount | None,
        now: float,
        headers: dict[str, str],
        address: str = DEFAULT_IP,
    ) -> None:
        """Count the request's weight (from the client IP ``address``) on arrival, and say so
        in ``headers``; 429 (or a ban) if it does not fit. A UID-weighted request without an
        account costs nothing."""
        options = self.options
        origin = self.origin(address)
        family = endpoint.family
        weight = endpoint.weight
        counters: list[tuple[str, Counter, str, int]] = []
        if endpoint.bucket == "uid" and account is not None:
            uid = self.uid.get(account.api_key)
            if uid is None:
                uid = self.uid[account.api_key] = Counter(
                    self.limits["sapi_uid"], self.window * 1000.0, options.window_mode
                )
            counters.append((f"uid:{account.name}", uid, HEADER_UID, weight))
            if options.uid_costs_ip:
                key, ip = self._ip_counter(endpoint, origin)
                counters.append((key, ip, HEADER_IP["sapi"], options.uid_ip_weight(weight)))
        elif endpoint.bucket == "ip":
            key, ip = self._ip_counter(endpoint, origin)
            counters.append((key, ip, HEADER_IP.get(family, HEADER_MBX), weight))
        if family == "sapi":
            # Every sapi answer also reports the IP weight, UID endpoints included.
            headers[HEADER_IP["sapi"]] = str(self._ip_counter(endpoint, origin)[1].used(now))
        refused: tuple[str, Counter, int] | None = None
        for key, counter, _, cost in counters:
            if refused is None and not counter.fits(cost, now):
                refused = (key, counter, cost)
        for key, counter, header, cost in counters:
            headers[header] = str(counter.charge(cost, now))
            self.stats.charge(key, cost, now, self.window)
        if refused is not None:
            self._refuse(origin.warden, family, *refused, now)

    def _refuse(
        self, warden: Warden, family: str, key: str, counter: Counter, weight: int, now: float
    ) -> NoReturn:
        """429 for ``key``'s budget; or a ban of the family (for this IP) for one that had its
        429 and kept on."""
        if warden.in_cooldown(key, now):
            until = warden.ban(family, now)
            self.stats.bans += 1
            raise Answer(
                418,
                -1003,
                ban_text(until),
                {"Retry-After": retry_after_text((until - now) / 1000.0)},
            )
        wait = counter.seconds_until_fits(weight, now)
        warden.refused(key, now, wait)
        self.stats.refused_by_window[key][int(now // (self.window * 1000))] += 1
        raise Answer(
            429,
            -1003,
            MSG[-1003].format(limit=counter.limit),
            {"Retry-After": retry_after_text(wait)},
        )

    def _ip_counter(self, endpoint: Endpoint[Any], origin: Origin) -> tuple[str, Counter]:
        """The IP limit ``endpoint`` is counted against, and its name in the stats."""
        family = endpoint.family
        if family != "sapi" or self.options.sapi_scope == "family":
            return f"{family}_ip{origin.suffix}", origin.ip[family]
        counter = origin.by_endpoint.get(endpoint.name)
        if counter is None:
            counter = origin.by_endpoint[endpoint.name] = Counter(
                self.limits["sapi_ip"],
                self.window * 1000.0,
                self.options.window_mode,
                external=self.options.external.get("sapi", 0.0),
                started_ms=self._started_ms,
            )
        return f"sapi_ip:{endpoint.name}{origin.suffix}", counter

"""The exchange's rate limits as this package names them: the API families, each budget
(:class:`Budget`), and the weight each allows per window (:class:`Limits`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ._exceptions import mask_key

Family = Literal["api", "sapi", "papi", "fapi"]
BucketKind = Literal["ip", "uid"]
#: What a budget counts: REST weight per IP or per account, or stream connection attempts.
BudgetKind = Literal["ip", "uid", "connect"]

FAMILIES: tuple[Family, ...] = ("api", "sapi", "papi", "fapi")


@dataclass(frozen=True, slots=True)
class Budget:
    """Which rate-limit budget a weight counts against: an API family's IP budget (``kind``
    ``"ip"``), one sapi endpoint's own IP budget (``scope`` its name, with
    ``Governor(sapi_scope="endpoint")``), one account's UID budget (``kind`` ``"uid"``,
    ``scope`` its API key, never shown), or the stream connection attempts of the IP
    (``Budget("ws", "connect")``)."""

    family: Family | Literal["ws"]
    kind: BudgetKind
    scope: str = field(default="", repr=False)

    @property
    def limit(self) -> str:
        """The :class:`Limits` field that limits it: ``"papi_ip"``, ``"sapi_uid"`` …"""
        return f"{self.family}_{self.kind}"

    @property
    def shown(self) -> str:
        """How snapshots, errors and logs name it: its store name, with an account's API key
        masked (``"sapi_uid:vmPU…h8A"``)."""
        if self.kind == "uid":
            return f"{self.limit}:{mask_key(self.scope)}"
        return self.store_name

    @property
    def store_name(self) -> str:
        """Its name in a shared store: ``"papi_ip"``, ``"sapi_ip:<endpoint>"``,
        ``"sapi_uid:<API key>"`` (a store keeps the key only hashed)."""
        return f"{self.limit}:{self.scope}" if self.scope else self.limit


@dataclass(frozen=True, slots=True)
class Limits:
    """The weight each rate-limit budget allows per window: the exchange's published limits
    (per minute) by default; and the stream connection attempts allowed per ``ws_window``
    seconds (300 per 5 minutes). ::

        Governor(limits=Limits(papi_ip=600), window=6.0)   # a tenth of the published papi limit

    Attributes:
        api_ip: the api family's IP budget.
        sapi_ip: the sapi family's IP budget.
        papi_ip: the papi family's IP budget.
        fapi_ip: the fapi family's IP budget.
        sapi_uid: each account's UID budget for UID-weighted SAPI endpoints.
        ws_connect: WebSocket connection attempts per IP (every first connection, reconnection
            and rotation of a user data stream) in any ``ws_window`` seconds.
        ws_window: the seconds ``ws_connect`` counts over: its own window, whatever the REST
            window is.

    Each weight must be a positive int (``TypeError`` for another type, ``ValueError`` below
    1), ``ws_window`` positive seconds.
    """

    api_ip: int = 6_000
    sapi_ip: int = 12_000
    sapi_uid: int = 180_000
    papi_ip: int = 6_000
    fapi_ip: int = 2_400
    ws_connect: int = 300
    ws_window: float = 300.0

    def __post_init__(self) -> None:
        for name in WEIGHTS:
            limit = getattr(self, name)
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"the {name} limit must be an int, not {limit!r}")
            if limit <= 0:
                raise ValueError(f"the {name} limit must be positive, not {limit}")
        window = self.ws_window
        if isinstance(window, bool) or not isinstance(window, (int, float)):
            raise TypeError(f"ws_window must be seconds, not {window!r}")
        if not 0 < window < math.inf:
            raise ValueError(f"ws_window must be positive seconds, not {window!r}")

    def __getitem__(self, budget: str) -> int:
        """The limit of ``budget`` by name (``"papi_ip"``, ``"ws_connect"`` …)."""
        if budget not in WEIGHTS:
            raise KeyError(budget)
        value: int = getattr(self, budget)
        return value

    def scaled(self, factor: float, *, least: int = 1) -> Limits:
        """Every limit times ``factor``, rounded, at least ``least``, and ``ws_window`` times
        ``factor``: the published limits for windows ``factor`` times as long, at the same
        rates (``Limits().scaled(6 / 60)`` for six-second windows: 30 connection attempts per
        30 s)."""
        weights = {name: max(least, round(self[name] * factor)) for name in WEIGHTS}
        return Limits(**weights, ws_window=self.ws_window * factor)


#: The budgets :class:`Limits` holds a count of (``ws_window`` is seconds, not a count).
WEIGHTS = ("api_ip", "sapi_ip", "sapi_uid", "papi_ip", "fapi_ip", "ws_connect")


#: The exchange's published limits, in weight per minute.
PUBLISHED_LIMITS = Limits()

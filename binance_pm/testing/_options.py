"""The simulated exchange's settings, checked once when it is made.

:class:`SimulatedExchange` takes them as keywords and keeps them as one frozen
:class:`ExchangeOptions`; the parts of the exchange (framing, rates, streams) read them from it.
Two of them a test may move while the exchange runs, on the exchange itself: ``skew_ms`` and
``faults``; the options keep what the exchange was made with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .._limits import FAMILIES, Limits
from ._limits import SapiScope, WindowMode

#: The faults the exchange can inject, each at its own per-request probability.
FAULT_KINDS = ("503", "reset", "slow", "garbage", "html")
#: The options that are seconds a stream's timers count, each positive and finite.
STREAM_SECONDS = (
    "listen_key_ttl",
    "push_every",
    "risk_every",
    "max_connection_seconds",
    "ping_every",
    "pong_within",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeOptions:
    """What a :class:`SimulatedExchange` was made with, checked: the keywords it takes, each
    described there, and all of them needed here (the defaults are the exchange's). ``faults``
    and ``external`` are read-only copies; ``ban_seconds`` and ``ban_grace`` are ``None`` for
    their defaults (two windows; ``min(1, window / 10)``).

    ``ValueError`` (or ``TypeError`` for a wrong type) names the first option that is wrong.
    """

    window: float
    limits: Limits
    accounts: int
    seed: int
    skew_ms: int
    window_mode: WindowMode
    faults: Mapping[str, float]
    external: Mapping[str, float]
    slow_seconds: float
    ban_seconds: float | None
    ban_grace: float | None
    grace_requests: int
    uid_costs_ip: bool | int
    sapi_scope: SapiScope
    port: int
    clock: Callable[[], float]
    listen_key_ttl: float
    push_every: float
    risk_every: float
    max_connection_seconds: float
    ping_every: float
    pong_within: float
    combined_streams: bool
    max_streams: int

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError("window must be positive seconds")
        if self.window_mode not in ("fixed", "sliding"):
            raise ValueError("window_mode must be 'fixed' or 'sliding'")
        if self.sapi_scope not in ("family", "endpoint"):
            raise ValueError(f"sapi_scope must be 'family' or 'endpoint', not {self.sapi_scope!r}")
        uid_costs_ip = self.uid_costs_ip
        if not isinstance(uid_costs_ip, int) or uid_costs_ip < 0:
            raise ValueError(f"uid_costs_ip must be True, False or a weight, not {uid_costs_ip!r}")
        grace_requests = self.grace_requests
        if isinstance(grace_requests, bool) or not isinstance(grace_requests, int):
            raise TypeError(f"grace_requests must be an int, not {grace_requests!r}")
        if grace_requests < 0:
            raise ValueError(f"grace_requests must be >= 0, not {grace_requests}")
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a Limits, not {type(self.limits).__name__}")
        faults_valid(self.faults)
        for family, share in self.external.items():
            if family not in FAMILIES or not 0 <= share < 1:
                raise ValueError(
                    f"external takes families ({', '.join(FAMILIES)}) with shares 0..1, not "
                    f"{family}={share!r}"
                )
        for name in STREAM_SECONDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be positive seconds, not {value!r}")
        object.__setattr__(self, "window", float(self.window))
        object.__setattr__(self, "faults", MappingProxyType(dict(self.faults)))
        object.__setattr__(self, "external", MappingProxyType(dict(self.external)))

    def uid_ip_weight(self, weight: int) -> int:
        """What a UID-weighted call of ``weight`` also costs the sapi IP limit (0: nothing)."""
        if self.uid_costs_ip is True:
            return weight
        return int(self.uid_costs_ip)


def faults_valid(faults: Mapping[str, float]) -> None:
    """``ValueError`` unless ``faults`` maps kinds of :data:`FAULT_KINDS` to probabilities that
    add up to 1 at most."""
    for kind, p in faults.items():
        if kind not in FAULT_KINDS or not 0 <= p <= 1:
            raise ValueError(
                f"faults take {', '.join(FAULT_KINDS)} with probabilities 0..1, not {kind}={p!r}"
            )
    if sum(faults.values()) > 1:
        raise ValueError(f"fault probabilities add up to more than 1: {dict(faults)}")

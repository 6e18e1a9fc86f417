"""Every endpoint this package calls, declared once: family, budget, weight, path and result type.

The client, the rate-limit governor, the simulated exchange and the docs all read this table, so
a weight is never written in two places.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from ._decoding import ResponseDecoder
from ._models import ClassicPMAccount, PMBalance, PMProAccount, PMProBalance, PMProSpanAccount

Family = Literal["api", "sapi", "papi", "fapi"]
BucketKind = Literal["ip", "uid"]

FAMILIES: tuple[Family, ...] = ("api", "sapi", "papi", "fapi")

PRODUCTION_HOSTS: dict[Family, str] = {
    "api": "https://api.binance.com",
    "sapi": "https://api.binance.com",
    "papi": "https://papi.binance.com",
    "fapi": "https://fapi.binance.com",
}

# The exchange's published limits, in weight per minute.
PUBLISHED_LIMITS: dict[str, int] = {
    "api_ip": 6_000,
    "sapi_ip": 12_000,
    "sapi_uid": 180_000,
    "papi_ip": 6_000,
    "fapi_ip": 2_400,
}


def check_limits(limits: dict[str, int]) -> dict[str, int]:
    """``limits`` (``"papi_ip"``: weight …) if each is a positive whole weight, else ValueError."""
    for name, limit in limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"the {name} limit must be a positive int, not {limit!r}")
    return limits


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST endpoint and what calling it costs."""

    name: str
    family: Family
    path: str
    weight: int
    bucket: BucketKind = "ip"
    signed: bool = True
    response: Any = None
    params: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    decoder: ResponseDecoder[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", ResponseDecoder(self.response, endpoint=self.label))

    @property
    def label(self) -> str:
        """``"GET /papi/v1/balance"``: how errors and logs name the endpoint."""
        return f"GET {self.path}"

    @property
    def bucket_name(self) -> str:
        """The budget the weight is charged to: ``"papi_ip"``, ``"sapi_uid"`` …"""
        return f"{self.family}_{self.bucket}"


class ServerTime(msgspec.Struct, frozen=True):
    """The answer of the time endpoints."""

    server_time: int = msgspec.field(name="serverTime")


PM_BALANCE = Endpoint(
    "pm_balance",
    "papi",
    "/papi/v1/balance",
    20,
    response=list[PMBalance] | PMBalance,
    params=("asset",),
)
PM_PRO_BALANCE = Endpoint(
    "pm_pro_balance",
    "sapi",
    "/sapi/v1/portfolio/balance",
    20,
    response=list[PMProBalance],
    params=("asset",),
)
PM_PRO_ACCOUNT = Endpoint(
    "pm_pro_account",
    "sapi",
    "/sapi/v1/portfolio/account",
    5,
    bucket="uid",
    response=PMProAccount,
)
PM_PRO_SPAN_ACCOUNT = Endpoint(
    "pm_pro_span_account",
    "sapi",
    "/sapi/v2/portfolio/account",
    5,
    response=PMProSpanAccount,
)
CLASSIC_PM_ACCOUNT = Endpoint(
    "classic_pm_account",
    "fapi",
    "/fapi/v1/pmAccountInfo",
    5,
    response=ClassicPMAccount,
    params=("asset",),
    required=("asset",),
)

API_TIME = Endpoint("api_time", "api", "/api/v3/time", 1, signed=False, response=ServerTime)
FAPI_TIME = Endpoint("fapi_time", "fapi", "/fapi/v1/time", 1, signed=False, response=ServerTime)
PAPI_PING = Endpoint(
    "papi_ping", "papi", "/papi/v1/ping", 1, signed=False, response=dict[str, object]
)

#: The five account endpoints, by method name.
ACCOUNT_ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (PM_BALANCE, PM_PRO_BALANCE, PM_PRO_ACCOUNT, PM_PRO_SPAN_ACCOUNT, CLASSIC_PM_ACCOUNT)
}

#: The endpoint that tells an account's state, by account type: what ``binance-pm demo`` polls.
STATE_ENDPOINT = {"PM_1": "pm_pro_account", "PM_2": "pm_balance", "PM_3": "pm_pro_span_account"}

#: Every endpoint, account and public, by name.
ENDPOINTS: dict[str, Endpoint] = {
    **ACCOUNT_ENDPOINTS,
    **{e.name: e for e in (API_TIME, FAPI_TIME, PAPI_PING)},
}

"""Every endpoint this package calls, declared once: family, budget, weight, path and result type.

The client, the rate-limit governor, the simulated exchange and the docs all read this table, so
a weight is never written in two places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from ._decoding import ResponseDecoder
from ._exceptions import DecodeError
from ._limits import BucketKind, Budget, Family
from ._models import (
    AccountType,
    ClassicPMAccount,
    PMAccount,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
)

T = TypeVar("T")

PRODUCTION_HOSTS: dict[Family, str] = {
    "api": "https://api.binance.com",
    "sapi": "https://api.binance.com",
    "papi": "https://papi.binance.com",
    "fapi": "https://fapi.binance.com",
}


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[T]):
    """One REST endpoint, what calling it costs, and what it answers (``T``).

    ``params`` are the optional parameters it takes (only ``asset`` here), ``required`` those it
    must have; ``shape``, if any, tidies a decoded answer for the asset asked for. An account
    endpoint also says what it is: ``product``, the product it belongs to as people name it
    (``"PM Pro"``); ``serves``, the account types it answers for (``"PM_1"``…); ``stream``,
    the user data stream that pushes its figures (``"pm"``, ``"pm_pro"``, or ``None``); and
    ``title``, what it tells, in a few words.
    """

    name: str
    family: Family
    path: str
    weight: int
    bucket: BucketKind = "ip"
    signed: bool = True
    response: Any = None
    params: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    shape: Callable[[T, str | None], T] | None = field(default=None, repr=False, compare=False)
    method: str = "GET"
    keyed: bool = False  # unsigned, but sent with the account's API key (listen keys)
    product: str = ""
    serves: tuple[str, ...] = ()
    stream: str | None = None
    title: str = ""
    #: Its answer's body, decoded and checked (a :class:`~binance_pm.DecodeError` when it is
    #: not what the endpoint answers).
    decode: Callable[[bytes], T] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decoder: ResponseDecoder[T] = ResponseDecoder(self.response, endpoint=self.label)
        object.__setattr__(self, "decode", decoder.decode)  # no frame of its own

    def query(self, asset: str | None) -> list[tuple[str, str]]:
        """The query parameters for ``asset`` (``None``: none), checked against this endpoint."""
        if asset is None:
            if "asset" in self.required:
                raise ValueError(f"{self.name} needs asset= (such as 'USDT')")
            return []
        if "asset" not in self.params:
            raise ValueError(f"{self.name} takes no asset")
        return [("asset", asset_name(asset))]

    @property
    def label(self) -> str:
        """``"GET /papi/v1/balance"``: how errors and logs name the endpoint."""
        return f"{self.method} {self.path}"

    @property
    def budget(self) -> Budget:
        """The kind of budget the weight is charged to: the family's IP budget, or (``bucket``
        ``"uid"``) each account's own, which :meth:`budget_for` names."""
        return Budget(self.family, self.bucket)

    def budget_for(self, account: str) -> Budget:
        """The budget a call for ``account`` (its API key) is charged to."""
        return Budget(self.family, self.bucket, account if self.bucket == "uid" else "")


def asset_name(asset: str) -> str:
    """The asset as the exchange names it (``" usdt"`` → ``"USDT"``): letters and digits,
    upper case; ``ValueError`` for what cannot be an asset's name, ``TypeError`` for a
    non-str."""
    if not isinstance(asset, str):
        raise TypeError(f"asset must be a str such as 'USDT', not {type(asset).__name__}")
    name = asset.strip().upper()
    if not name or not name.isascii() or not name.isalnum():
        raise ValueError(f"asset must be an asset's name such as 'USDT', not {asset!r}")
    return name


class ServerTime(msgspec.Struct, frozen=True):
    """The answer of the time endpoints."""

    server_time: int = msgspec.field(name="serverTime")


def _one_or_all(
    result: list[PMBalance] | PMBalance, asset: str | None
) -> list[PMBalance] | PMBalance:
    """``/papi/v1/balance`` answers a list, or one object when ``asset`` is sent: without
    ``asset`` always a list; with it, that asset's balance (taken from a list if one came)."""
    if asset is None:
        return result if isinstance(result, list) else [result]
    if isinstance(result, PMBalance):
        return result
    wanted = asset_name(asset)
    matches = [b for b in result if b.asset.upper() == wanted]
    if len(matches) != 1:
        raise DecodeError(
            f"asked for {wanted} but the answer is a list with {len(matches)} such assets",
            endpoint="GET /papi/v1/balance",
            path="$",
        )
    return matches[0]


PM_BALANCE: Endpoint[list[PMBalance] | PMBalance] = Endpoint(
    "pm_balance",
    "papi",
    "/papi/v1/balance",
    20,
    response=list[PMBalance] | PMBalance,
    params=("asset",),
    shape=_one_or_all,
    product="PM",
    serves=("PM_2",),
    stream="pm",
    title="Portfolio Margin balances",
)
PM_ACCOUNT: Endpoint[PMAccount] = Endpoint(
    "pm_account",
    "papi",
    "/papi/v1/account",
    20,
    response=PMAccount,
    product="PM",
    serves=("PM_2",),
    stream="pm",
    title="Portfolio Margin account",
)
PM_PRO_BALANCE: Endpoint[list[PMProBalance]] = Endpoint(
    "pm_pro_balance",
    "sapi",
    "/sapi/v1/portfolio/balance",
    20,
    response=list[PMProBalance],
    params=("asset",),
    product="PM Pro",
    serves=("PM_1", "PM_3"),
    stream="pm_pro",
    title="PM Pro balances",
)
PM_PRO_ACCOUNT: Endpoint[PMProAccount] = Endpoint(
    "pm_pro_account",
    "sapi",
    "/sapi/v1/portfolio/account",
    5,
    bucket="uid",
    response=PMProAccount,
    product="PM Pro",
    serves=("PM_1", "PM_3"),
    stream="pm_pro",
    title="PM Pro account",
)
PM_PRO_SPAN_ACCOUNT: Endpoint[PMProSpanAccount] = Endpoint(
    "pm_pro_span_account",
    "sapi",
    "/sapi/v2/portfolio/account",
    5,
    response=PMProSpanAccount,
    product="PM Pro SPAN",
    serves=("PM_3",),
    stream="pm_pro",
    title="PM Pro SPAN account",
)
CLASSIC_PM_ACCOUNT: Endpoint[ClassicPMAccount] = Endpoint(
    "classic_pm_account",
    "fapi",
    "/fapi/v1/pmAccountInfo",
    5,
    response=ClassicPMAccount,
    params=("asset",),
    required=("asset",),
    product="Classic PM",
    serves=("PM_1", "PM_3"),
    title="Classic PM account for one asset",
)

API_TIME: Endpoint[ServerTime] = Endpoint(
    "api_time", "api", "/api/v3/time", 1, signed=False, response=ServerTime
)
FAPI_TIME: Endpoint[ServerTime] = Endpoint(
    "fapi_time", "fapi", "/fapi/v1/time", 1, signed=False, response=ServerTime
)
PAPI_PING: Endpoint[dict[str, object]] = Endpoint(
    "papi_ping", "papi", "/papi/v1/ping", 1, signed=False, response=dict[str, object]
)


class ListenKey(msgspec.Struct, frozen=True):
    """The answer of ``POST …/listenKey``."""

    listen_key: str = msgspec.field(name="listenKey")


class Acknowledged(msgspec.Struct, frozen=True):
    """The answer of a listen key's keepalive and close: ``{}``."""


def _listen_key_endpoints(product: str, family: Family, path: str) -> dict[str, Endpoint[Any]]:
    made: dict[str, Endpoint[Any]] = {}
    for action, method, response in (
        ("open", "POST", ListenKey),
        ("keepalive", "PUT", Acknowledged),
        ("close", "DELETE", Acknowledged),
    ):
        made[action] = Endpoint(
            f"{product}_listen_key_{action}",
            family,
            path,
            1,
            signed=False,
            keyed=True,
            method=method,
            response=response,
        )
    return made


@dataclass(frozen=True, slots=True)
class UserStream:
    """One product's user data stream: how its listen key is kept, where it is read, and the
    account types it serves."""

    product: str  # "pm" or "pm_pro", as ``Session.stream`` takes it
    listen_key: dict[str, Endpoint[Any]]  # by action: "open", "keepalive", "close"
    ws_path: str  # + the listen key: one account a connection
    combined_path: str  # + "?streams=<key1>/<key2>/…": several on one
    serves: tuple[str, ...]  # account types
    pushes_every: float | None = None  # seconds between the updates it pushes unasked, if any


#: The stream host of the production exchange.
PRODUCTION_STREAMS = "wss://fstream.binance.com"

#: The user data streams, by product; listen-key calls weigh 1 each, sent with the API key.
STREAMS: dict[str, UserStream] = {
    "pm": UserStream(
        "pm",
        _listen_key_endpoints("pm", "papi", "/papi/v1/listenKey"),
        "/pm/ws/",
        "/pm/stream",
        ("PM_2",),
    ),
    "pm_pro": UserStream(
        "pm_pro",
        _listen_key_endpoints("pm_pro", "fapi", "/fapi/v1/listenKey"),
        "/pm-classic/ws/",
        "/pm-classic/stream",
        ("PM_1", "PM_3"),
        pushes_every=5.0,  # ACCOUNT_UPDATE, in USD
    ),
}
#: The user data stream an account of each type follows (``"PM_2"`` → ``"pm"``).
STREAM_OF: dict[str, str] = {kind: p for p, stream in STREAMS.items() for kind in stream.serves}
#: The listen-key endpoints, by product and action.
LISTEN_KEY: dict[str, dict[str, Endpoint[Any]]] = {p: s.listen_key for p, s in STREAMS.items()}

#: The account endpoints, by method name.
ACCOUNT_ENDPOINTS: dict[str, Endpoint[Any]] = {
    e.name: e
    for e in (
        PM_BALANCE,
        PM_ACCOUNT,
        PM_PRO_BALANCE,
        PM_PRO_ACCOUNT,
        PM_PRO_SPAN_ACCOUNT,
        CLASSIC_PM_ACCOUNT,
    )
}

#: The endpoint that tells an account's state, by account type: what ``binance-pm demo`` polls.
STATE_ENDPOINT = {"PM_1": "pm_pro_account", "PM_2": "pm_account", "PM_3": "pm_pro_span_account"}
#: Each account type's product, as people name it.
PRODUCT_NAME = {"PM_1": "PM Pro", "PM_2": "PM", "PM_3": "PM Pro SPAN"}


def account_type(product: AccountType | str) -> AccountType:
    """The account type a product is given as: an :class:`AccountType`, its value
    (``"PM_2"``), or its name (``"PM"``, ``"PM Pro"``, ``"PM Pro SPAN"``, any case)."""
    if isinstance(product, AccountType) and product.value in PRODUCT_NAME:
        return product
    if isinstance(product, AccountType):
        product = product.value  # an account type this package does not know: refused below
    if not isinstance(product, str):
        raise TypeError(f"product must be an AccountType or a str, not {type(product).__name__}")
    wanted = " ".join(product.split()).upper()
    for kind, name in PRODUCT_NAME.items():
        if wanted in (kind, name.upper()):
            return AccountType(kind)
    names = ", ".join(f"{name!r} ({kind})" for kind, name in PRODUCT_NAME.items())
    raise ValueError(f"product must be one of {names}, not {product!r}")


def wrong_product_hint(endpoint: Endpoint[Any]) -> str | None:
    """What a ``-2015`` from ``endpoint`` may mean beside a bad key: the key is good but its
    account is of a product this endpoint does not serve. ``None`` for endpoints that serve
    every product."""
    others = [kind for kind in PRODUCT_NAME if kind not in endpoint.serves]
    if not endpoint.serves or not others:
        return None
    served = " and ".join(PRODUCT_NAME[kind] for kind in endpoint.serves)
    instead = "; ".join(f"{PRODUCT_NAME[kind]}: {STATE_ENDPOINT[kind]}()" for kind in others)
    return (
        f"{endpoint.name} answers {served} accounts only: if the key is another product's, "
        f"call its endpoints ({instead}), or let AsyncClient.detect_product() tell"
    )


#: Every endpoint, account and public, by name.
ENDPOINTS: dict[str, Endpoint[Any]] = {
    **ACCOUNT_ENDPOINTS,
    **{e.name: e for e in (API_TIME, FAPI_TIME, PAPI_PING)},
}

"""binance_pm: an asyncio SDK for the Binance Portfolio Margin account endpoints.

::

    from binance_pm import AsyncClient

    async with AsyncClient(api_key, secret=secret) as client:
        for balance in await client.pm_balance():
            print(balance.asset, balance.total_wallet_balance)

See :class:`Session` for many accounts sharing one connection pool, budget and clock.
"""

from __future__ import annotations

from ._buckets import BucketState
from ._client import AsyncClient
from ._endpoints import Limits
from ._events import ListenKeyExpired, OtherEvent, PMProAccountUpdate, RiskLevelChange, StreamEvent
from ._exceptions import (
    APIError,
    AuthError,
    BadRequestError,
    BinancePMError,
    DecodeError,
    GovernorTimeout,
    GovernorUnavailable,
    IPBannedError,
    RateLimitError,
    ServerError,
    SessionError,
    TimestampError,
    TransportError,
)
from ._governor import Governor
from ._models import (
    AccountStatus,
    AccountType,
    ClassicPMAccount,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
    RiskUnitMM,
)
from ._poller import Update
from ._session import Session
from ._streams import StreamUpdate
from ._version import __version__

__all__ = [
    "APIError",
    "AccountStatus",
    "AccountType",
    "AsyncClient",
    "AuthError",
    "BadRequestError",
    "BinancePMError",
    "BucketState",
    "ClassicPMAccount",
    "DecodeError",
    "Governor",
    "GovernorTimeout",
    "GovernorUnavailable",
    "IPBannedError",
    "Limits",
    "ListenKeyExpired",
    "OtherEvent",
    "PMBalance",
    "PMProAccount",
    "PMProAccountUpdate",
    "PMProBalance",
    "PMProSpanAccount",
    "RateLimitError",
    "RiskLevelChange",
    "RiskUnitMM",
    "ServerError",
    "Session",
    "SessionError",
    "StreamEvent",
    "StreamUpdate",
    "TimestampError",
    "TransportError",
    "Update",
    "__version__",
]

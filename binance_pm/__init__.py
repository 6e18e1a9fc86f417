"""binance_pm: an asyncio SDK for the Binance Portfolio Margin account endpoints.

::

    from binance_pm import AsyncClient

    async with AsyncClient(api_key, secret=secret) as client:
        for balance in await client.pm_balance():
            print(balance.asset, balance.total_wallet_balance)

See :class:`Session` for many accounts sharing one connection pool, budget and clock. The
contracts a caller may implement are public too: a rate-limit hook (:class:`RateLimitHook`,
:class:`Permit`) in place of :class:`Governor`, a :class:`Store` that governors in many processes
share, and a :class:`Sender` to send with.
"""

from __future__ import annotations

from ._attempts import Attempt, ConnectionBudget
from ._client import AccountResult, AsyncClient
from ._endpoints import Endpoint
from ._engine import Engine
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
from ._hook import Permit, RateLimitHook, SharedCount, Store, StoreError
from ._http import Answer, Sender
from ._jobs import Sharing
from ._limits import Budget, Limits
from ._models import (
    AccountStatus,
    AccountType,
    ClassicPMAccount,
    PMAccount,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
    RiskUnitMM,
)
from ._public import show_public_paths
from ._running import Background, Feed
from ._session import Session
from ._states import BucketState
from ._updates import StreamUpdate, Update, default_priority
from ._version import __version__

__all__ = [
    "APIError",
    "AccountResult",
    "AccountStatus",
    "AccountType",
    "Answer",
    "AsyncClient",
    "Attempt",
    "AuthError",
    "Background",
    "BadRequestError",
    "BinancePMError",
    "BucketState",
    "Budget",
    "ClassicPMAccount",
    "ConnectionBudget",
    "DecodeError",
    "Endpoint",
    "Engine",
    "Feed",
    "Governor",
    "GovernorTimeout",
    "GovernorUnavailable",
    "IPBannedError",
    "Limits",
    "ListenKeyExpired",
    "OtherEvent",
    "PMAccount",
    "PMBalance",
    "PMProAccount",
    "PMProAccountUpdate",
    "PMProBalance",
    "PMProSpanAccount",
    "Permit",
    "RateLimitError",
    "RateLimitHook",
    "RiskLevelChange",
    "RiskUnitMM",
    "Sender",
    "ServerError",
    "Session",
    "SessionError",
    "SharedCount",
    "Sharing",
    "Store",
    "StoreError",
    "StreamEvent",
    "StreamUpdate",
    "TimestampError",
    "TransportError",
    "Update",
    "__version__",
    "default_priority",
]


show_public_paths(__name__, __all__, globals())
del show_public_paths

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


def _show_public_paths() -> None:
    """Every exported class and function names itself ``binance_pm.X`` (in reprs, ``help()``,
    tracebacks and the API reference), not the private module that defines it. A class's own
    annotations are resolved first, against the module that wrote them (and this one, for the
    names that module imports only for type checking), so that ``typing.get_type_hints`` and
    msgspec still find every type they name."""
    import inspect
    import sys
    from typing import ForwardRef

    for name in __all__:
        thing = globals()[name]
        home = getattr(thing, "__module__", "")
        if not home.startswith("binance_pm."):
            continue
        own = inspect.get_annotations(thing) if isinstance(thing, type) else None
        if own:
            names = {**globals(), **vars(sys.modules[home])}
            for key, hint in own.items():
                text = hint.__forward_arg__ if isinstance(hint, ForwardRef) else hint
                if isinstance(text, str):
                    own[key] = eval(text, names)
            thing.__annotations__ = own
        thing.__module__ = __name__


_show_public_paths()

"""What the simulated exchange answers when a request is let through: each endpoint's body.

The account endpoints answer from the account's :class:`~binance_pm.testing._book.Book`, with
the shapes of the exchange's documented examples (``/papi/v1/balance`` a list, or one object
when ``asset`` is sent); the public ones the server's time, or ``{}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .._endpoints import (
    CLASSIC_PM_ACCOUNT,
    PM_ACCOUNT,
    PM_BALANCE,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
)
from ._messages import MSG, Answer, server_time_body

if TYPE_CHECKING:
    from .._endpoints import Endpoint
    from ._book import Book, SimAccount


def public_body(endpoint: Endpoint[Any], now_ms: int) -> bytes:
    """The answer of an unsigned endpoint: the time endpoints' ``serverTime``, a ping's ``{}``."""
    return server_time_body(now_ms) if endpoint.path.endswith("/time") else b"{}"


def account_body(
    endpoint: Endpoint[Any],
    account: SimAccount,
    book: Book,
    params: dict[str, str],
    now_ms: int,
) -> bytes:
    """The answer of a signed account endpoint, for ``account`` whose money is in ``book``;
    ``-1102`` for an ``asset`` it does not hold, where the endpoint says so."""
    asset = params.get("asset", "").upper()
    name = endpoint.name
    if name in (PM_BALANCE.name, PM_PRO_BALANCE.name):
        options = name == PM_PRO_BALANCE.name
        if asset:
            if asset not in book.balances:
                raise Answer(400, -1102, MSG[-1102].format(name="asset"))
            if not options:
                return msgspec.json.encode(book.balance(asset, now_ms, single=True))
            return msgspec.json.encode([book.balance(asset, now_ms, options=True)])
        return msgspec.json.encode(
            [book.balance(a, now_ms, options=options) for a in book.balances]
        )
    if name == CLASSIC_PM_ACCOUNT.name:
        return msgspec.json.encode(book.max_withdraw(asset))
    if name == PM_ACCOUNT.name:
        return msgspec.json.encode(book.pm_account(now_ms))
    return msgspec.json.encode(
        book.account(account.account_type, span=name == PM_PRO_SPAN_ACCOUNT.name)
    )

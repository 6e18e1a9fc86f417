"""Tools for testing code that uses binance_pm, without keys or the internet.

Needs the ``sim`` extra (``pip install -e '.[sim]'`` in a checkout).
"""

from __future__ import annotations

from .._public import show_public_paths
from ._book import SimAccount
from ._exchange import SimulatedExchange
from ._server import LoopbackServer
from ._stats import ExchangeStats, budget_use, most_in_any_window

__all__ = [
    "ExchangeStats",
    "LoopbackServer",
    "SimAccount",
    "SimulatedExchange",
    "budget_use",
    "most_in_any_window",
]

show_public_paths(__name__, __all__, globals())
del show_public_paths

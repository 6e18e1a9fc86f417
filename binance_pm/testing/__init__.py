"""Tools for testing code that uses binance_pm, without keys or the internet.

Needs the ``sim`` extra (``pip install 'binance-pm[sim]'``).
"""

from __future__ import annotations

from ._server import LoopbackServer

__all__ = ["LoopbackServer"]

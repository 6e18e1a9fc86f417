"""``python -m binance_pm``: the ``binance-pm`` command."""

import sys

from ._cli import main

sys.exit(main())

"""The ``binance-pm`` command (also ``python -m binance_pm``).

- ``demo``: the simulated exchange in this process, all its accounts polled through one Session,
  shown live, then a summary of what the exchange counted.
- ``watch``: the same live view for real accounts listed in a TOML file.
- ``pm-balance`` … ``classic-pm-account``: one call with keys from the environment.
- ``serve``: the simulated exchange until interrupted, printing its base URL and its accounts,
  one JSON object per line, so scripts and other processes can use it.

Errors a user can cause (missing or refused keys, a bad file) end in one line on stderr and a
non-zero exit status, never a traceback; the statuses are in :data:`_common.EXIT_STATUSES`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from . import demo, one_shot, serve, watch
from ._common import EXIT_STATUSES, INTERRUPTED, sigterm_as_ctrl_c


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binance-pm",
        description="Binance Portfolio Margin account SDK tools.",
        epilog=EXIT_STATUSES,
    )
    parser.add_argument("--version", action="version", version=f"binance-pm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    demo.add_parser(commands)
    watch.add_parser(commands)
    one_shot.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM (systemd, docker) is Ctrl-C for every command, from the first moment: the work is
    # cancelled and closed, the summary printed, and the status is 130 however early or late
    # (a second interruption during the summary included) it comes.
    sigterm_as_ctrl_c()
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
    except KeyboardInterrupt:
        return INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())

"""What every command shares: argument types, one-line failures and the exit statuses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

#: Exit statuses, documented in ``binance-pm --help`` and the README.
OK = 0
FAILED = 1  # a one-shot call failed or was refused; the simulated exchange could not listen
USAGE = 2  # a wrong option, a bad accounts file, missing keys
SOME_FAILING = 3  # watch/demo: some accounts were failing (or dropped) when it ended
ALL_FAILING = 4  # watch/demo: no account had a good answer when it ended
INTERRUPTED = 130

EXIT_STATUSES = (
    "exit status: 0 ok; 1 a call failed or was refused; 2 a usage error (bad option, file or "
    "keys); 3 (watch, demo) some accounts were failing or dropped at the end; 4 (watch, demo) "
    "every account was failing at the end"
)


def positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def share(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        part = float(value)
    except ValueError:
        part = -1.0
    if not sep or not name or not 0 <= part <= 1:
        raise argparse.ArgumentTypeError(f"expected NAME=SHARE with SHARE in 0..1, not {text!r}")
    return name, part


def fail(message: str, code: int = FAILED) -> int:
    print(f"binance-pm: {message}", file=sys.stderr)
    return code


def needs(extra: str, exc: ImportError) -> int:
    return fail(
        f"this command needs the '{extra}' extra: pip install 'binance-pm[{extra}]' ({exc})", USAGE
    )

"""What every command shares: argument types, one-line failures and the exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import signal
import sys
from collections.abc import Callable, Iterator

from .._config import MAX_SECONDS

#: Exit statuses, documented in ``binance-pm --help`` and the docs.
OK = 0
FAILED = 1  # a one-shot call failed or was refused; the simulated exchange could not start
USAGE = 2  # a wrong option or value, a bad accounts file, missing keys, a port in use
SOME_FAILING = 3  # watch/demo: some accounts were failing (or dropped) when it ended
ALL_FAILING = 4  # watch/demo: no account had a good answer when it ended
IN_LIQUIDATION = 5  # watch: some account in a liquidation status (it wins over 3 and 4)
INTERRUPTED = 130  # Ctrl-C or SIGTERM, for every command (after its summary)

EXIT_STATUSES = (
    "exit status: 0 ok; 1 a call failed or was refused; 2 a usage error (a bad option or value, "
    "file or keys, a port in use); 3 (watch, demo) some accounts were failing or dropped at the "
    "end; 4 (watch, demo) every account was failing at the end; 5 (watch) some account in a "
    "liquidation status (ACTIVE_LIQUIDATION, FORCE_LIQUIDATION, BANKRUPTED) at the end, whatever "
    "the others; 130 interrupted (Ctrl-C or SIGTERM), after the summary"
)


def sigterm_as_ctrl_c() -> None:
    """SIGTERM (systemd, docker, ``kill``) ends the command the way Ctrl-C does: its work is
    cancelled and closed (streams and their listen keys), its summary printed, exit status 130.

    Also when SIGINT is ignored, as a shell leaves it for a command started in the background
    (``binance-pm watch ... &`` in a script): Ctrl-C stays ignored then, SIGTERM never is."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: object) -> None:
    if callable(signal.getsignal(signal.SIGINT)):
        signal.raise_signal(signal.SIGINT)  # asyncio's handler: the main task is cancelled
    else:
        raise KeyboardInterrupt  # SIGINT ignored: end as its default handler would


def port(text: str) -> int:
    """A TCP port, 0 (a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (0 to 65535): {text!r}")
    return value


def positive(
    kind: type[float] | type[int], *, most: float | None = None
) -> Callable[[str], float | int]:
    """An argument type: a positive, finite number (up to ``most``)."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 < value < math.inf:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:g}: {text!r}")
        return value

    return parse


def seconds() -> Callable[[str], float | int]:
    """An argument type for a period the library takes: positive seconds, up to a day."""
    return positive(float, most=MAX_SECONDS)


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
        f"this command needs the '{extra}' extra: pip install -e '.[{extra}]' in a checkout of "
        f"binance-pm ({exc})",
        USAGE,
    )


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What is made so far (a desk's clients, keys and budgets) kept out of the garbage
    collector's full collections until the end: their pause grows with the desk (about 65 ms
    at 10,000 accounts polled, 6 ms with this). Objects go on being freed when unreferenced."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


#: The budgets named on the command line as ``binance-pm serve`` names them.
BUDGETS = ("api-ip", "sapi-ip", "sapi-uid", "papi-ip", "fapi-ip")


def add_budget_options(parser: argparse.ArgumentParser, *, whose: str) -> None:
    """``--window S`` and each budget's ``--papi-ip W``…: ``whose`` limits (weight per
    window), the published ones by default."""
    from .._limits import Limits

    parser.add_argument(
        "--window",
        type=positive(float),
        default=60.0,
        metavar="S",
        help=f"seconds per rate-limit window of {whose} (default 60)",
    )
    for name in BUDGETS:
        parser.add_argument(
            f"--{name}",
            type=positive(int),
            default=None,
            metavar="W",
            help=f"{name.replace('-', ' ')} weight per window (default: the published "
            f"{Limits()[name.replace('-', '_')]:,})",
        )


def budget_limits(args: argparse.Namespace) -> dict[str, int]:
    """The budgets given on the command line, by :class:`~binance_pm.Limits` field."""
    fields = [name.replace("-", "_") for name in BUDGETS]
    return {key: getattr(args, key) for key in fields if getattr(args, key) is not None}

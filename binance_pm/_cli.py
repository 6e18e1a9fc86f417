"""The ``binance-pm`` command (also ``python -m binance_pm``).

``binance-pm serve`` runs the simulated exchange until interrupted, printing its base URL and
its accounts, one JSON object per line, so scripts and other processes can use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from ._version import __version__


def _positive(kind: type[float] | type[int]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def _share(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not sep or not name or not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"expected NAME=SHARE with SHARE in 0..1, not {text!r}")
    return name, share


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binance-pm", description="Binance Portfolio Margin account SDK tools."
    )
    parser.add_argument("--version", action="version", version=f"binance-pm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the simulated exchange on 127.0.0.1",
        description="Run the simulated Portfolio Margin exchange on 127.0.0.1 until interrupted. "
        "Prints 'base_url URL', then one JSON object per account (name, api_key, key_type, "
        "account_type, and secret or private_key), then 'ready'.",
    )
    serve.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    serve.add_argument("--accounts", type=_positive(int), default=10, help="accounts to make")
    serve.add_argument("--seed", type=int, default=0, help="seed for accounts and faults")
    serve.add_argument(
        "--window",
        type=_positive(float),
        default=60.0,
        help="seconds per rate-limit window (default 60)",
    )
    serve.add_argument("--window-mode", choices=("fixed", "sliding"), default="fixed")
    for name in ("api-ip", "sapi-ip", "sapi-uid", "papi-ip", "fapi-ip"):
        serve.add_argument(
            f"--{name}",
            type=_positive(int),
            default=None,
            help=f"{name.replace('-', ' ')} weight per window",
        )
    serve.add_argument("--skew-ms", type=int, default=0, help="server clock ahead by this much")
    serve.add_argument(
        "--fault",
        type=_share,
        action="append",
        default=[],
        metavar="KIND=P",
        help="inject a fault (503, reset, slow, garbage, html) at rate P",
    )
    serve.add_argument(
        "--external",
        type=_share,
        action="append",
        default=[],
        metavar="FAMILY=SHARE",
        help="weight another process spends per window",
    )
    serve.set_defaults(run=_serve)
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        from .testing import SimulatedExchange
    except ImportError as exc:
        print(
            f"binance-pm serve needs the 'sim' extra: pip install 'binance-pm[sim]' ({exc})",
            file=sys.stderr,
        )
        return 2
    limits = {
        key: getattr(args, key)
        for key in ("api_ip", "sapi_ip", "sapi_uid", "papi_ip", "fapi_ip")
        if getattr(args, key) is not None
    }
    try:
        exchange = SimulatedExchange(
            window=args.window,
            window_mode=args.window_mode,
            accounts=args.accounts,
            seed=args.seed,
            skew_ms=args.skew_ms,
            faults=dict(args.fault),
            external=dict(args.external),
            port=args.port,
            **limits,
        )
    except ValueError as exc:
        print(f"binance-pm serve: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        async with exchange:
            print(f"base_url {exchange.base_url}")
            for account in exchange.accounts:
                record = {
                    "name": account.name,
                    "api_key": account.api_key,
                    "key_type": account.key_type,
                    "account_type": account.account_type.value,
                }
                if account.secret is not None:
                    record["secret"] = account.secret
                else:
                    assert account.private_key is not None
                    record["private_key"] = account.private_key.decode()
                print(json.dumps(record))
            print("ready", flush=True)
            await exchange.serve_forever()

    # uvicorn shuts down gracefully on SIGTERM and SIGINT, then raises the signal again; let
    # SIGTERM end the command the way Ctrl-C does, with exit status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"binance-pm serve: cannot listen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

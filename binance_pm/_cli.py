"""The ``binance-pm`` command (also ``python -m binance_pm``).

- ``demo``: the simulated exchange in this process, all its accounts polled through one Session,
  shown live, then a summary of what the exchange counted.
- ``watch``: the same live view for real accounts listed in a TOML file.
- ``pm-balance`` … ``classic-pm-account``: one call with keys from the environment.
- ``serve``: the simulated exchange until interrupted, printing its base URL and its accounts,
  one JSON object per line, so scripts and other processes can use it.

Errors a user can cause (missing or refused keys, a bad file) end in one line on stderr and a
non-zero exit status, never a traceback: 2 for a usage error, 1 for a refusal or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import os
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ._endpoints import Limits
from ._governor import Governor
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
    serve.add_argument(
        "--uid-costs-ip",
        type=_positive(int),
        nargs="?",
        const=0,
        default=None,
        metavar="WEIGHT",
        help="charge UID calls (pm_pro_account) to the sapi IP limit too: their own weight, or "
        "WEIGHT (default: they cost no IP weight, as documented)",
    )
    serve.add_argument(
        "--sapi-scope",
        choices=("family", "endpoint"),
        default="family",
        help="one sapi IP limit for all sapi endpoints, or one per endpoint (default: family)",
    )
    serve.add_argument(
        "--grace-requests",
        type=int,
        default=5,
        metavar="N",
        help="requests refused with 429s, not a ban, just after a 429 (default 5)",
    )
    serve.add_argument(
        "--broken",
        action="append",
        default=[],
        metavar="NAME",
        help="an account (acct-0003…) whose every request fails with a 500",
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo",
        help="poll a simulated exchange's accounts, live (the main job)",
        description="Start the simulated exchange in this process and poll all its accounts "
        "through one Session and one governor, as fast as its budgets allow: a live table on a "
        "terminal (plain lines when piped), then a summary of calls, weight and share of each "
        "budget used, 429s, 418s and errors. Its limits are the published ones, scaled to the "
        "window.",
    )
    demo.add_argument("--accounts", type=_positive(int), default=60, help="accounts (60)")
    demo.add_argument("--seconds", type=_positive(float), default=20.0, help="run time (20)")
    demo.add_argument(
        "--window", type=_positive(float), default=2.0, help="seconds per rate-limit window (2)"
    )
    demo.add_argument(
        "--every", type=_positive(float), default=0.25, help="poll each account this often (0.25)"
    )
    demo.add_argument(
        "--alert-mmr", type=_positive(float), default=1.5, help="highlight below this uniMMR"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for the accounts")
    demo.set_defaults(run=_demo)

    watch = commands.add_parser(
        "watch",
        help="poll real accounts from a TOML file, live",
        description="Poll the accounts in FILE through one Session, live. FILE lists "
        "[[account]] tables with name, api_key, and secret or private_key_file (a PEM; "
        "private_key_password if it is encrypted), and optionally endpoint (pm_balance, "
        "pm_pro_account (default), pm_pro_span_account…). Keys are never shown.",
    )
    watch.add_argument("--accounts", required=True, metavar="FILE", help="TOML file of accounts")
    watch.add_argument(
        "--every", type=_positive(float), default=5.0, help="poll each account this often (5)"
    )
    watch.add_argument(
        "--alert-mmr", type=_positive(float), default=1.5, help="highlight below this uniMMR"
    )
    watch.add_argument(
        "--seconds", type=_positive(float), default=None, help="stop after this long"
    )
    watch.add_argument("--base-url", default=None, help="send every request here instead")
    watch.set_defaults(run=_watch)

    for name, help_text in ONE_SHOT.items():
        one = commands.add_parser(
            name.replace("_", "-"),
            help=help_text,
            description=f"{help_text}. Keys come from BINANCE_API_KEY, and BINANCE_API_SECRET "
            "or BINANCE_PRIVATE_KEY_FILE (with BINANCE_PRIVATE_KEY_PASSWORD if encrypted).",
        )
        if name in ("pm_balance", "pm_pro_balance", "classic_pm_account"):
            one.add_argument(
                "--asset", required=name == "classic_pm_account", help="one asset, e.g. USDT"
            )
        one.add_argument("--base-url", default=None, help="send the request here instead")
        one.add_argument("--json", action="store_true", help="print JSON instead of a table")
        one.add_argument(
            "--timeout", type=_positive(float), default=10.0, help="seconds in all (10)"
        )
        one.set_defaults(run=_one_shot, endpoint=name)
    return parser


ONE_SHOT = {
    "pm_balance": "Portfolio Margin balances (GET /papi/v1/balance)",
    "pm_pro_balance": "PM Pro balances (GET /sapi/v1/portfolio/balance)",
    "pm_pro_account": "PM Pro account (GET /sapi/v1/portfolio/account)",
    "pm_pro_span_account": "PM Pro SPAN account (GET /sapi/v2/portfolio/account)",
    "classic_pm_account": "Classic PM account for one asset (GET /fapi/v1/pmAccountInfo)",
}
#: What the demo polls for each kind of account.
KIND = {"PM_1": "PM Pro", "PM_2": "PM", "PM_3": "PM Pro SPAN"}


def _fail(message: str, code: int = 1) -> int:
    print(f"binance-pm: {message}", file=sys.stderr)
    return code


def _needs(extra: str, exc: ImportError) -> int:
    return _fail(
        f"this command needs the '{extra}' extra: pip install 'binance-pm[{extra}]' ({exc})", 2
    )


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
            uid_costs_ip=(False if args.uid_costs_ip is None else (args.uid_costs_ip or True)),
            sapi_scope=args.sapi_scope,
            grace_requests=args.grace_requests,
            limits=Limits(**limits),
        )
    except ValueError as exc:
        print(f"binance-pm serve: {exc}", file=sys.stderr)
        return 2
    names = {account.name: account.api_key for account in exchange.accounts}
    for name in args.broken:
        if name not in names:
            print(f"binance-pm serve: --broken {name}: no such account", file=sys.stderr)
            return 2
        exchange.broken.add(names[name])

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


def _demo(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from .testing import SimulatedExchange
    except ImportError as exc:
        return _needs("cli", exc)
    from ._endpoints import PUBLISHED_LIMITS, STATE_ENDPOINT
    from ._session import Session
    from ._view import Board, Row, run_board

    # The published per-minute rates, over the demo's window.
    limits = PUBLISHED_LIMITS.scaled(args.window / 60, least=20)
    console = Console()
    exchange = SimulatedExchange(
        window=args.window, accounts=args.accounts, seed=args.seed, limits=limits
    )
    governor = exchange.governor()

    async def run() -> tuple[Board, float, float]:
        async with exchange, Session(base_url=exchange.base_url, governor=governor) as session:
            jobs = {}
            rows = {}
            for account in exchange.accounts:
                client = session.client(account.api_key, **account.credentials())
                kind = account.account_type.value
                jobs[client] = STATE_ENDPOINT[kind]
                rows[client] = Row(account.name, KIND[kind])
            board = Board(rows, args.alert_mmr)
            started = exchange.server_ms()
            title = (
                f"binance-pm demo: {args.accounts} simulated accounts, {args.window:g} s windows"
            )
            await run_board(
                session,
                governor,
                jobs,
                board,
                every=args.every,
                seconds=args.seconds,
                console=console,
                title=title,
            )
            return board, started, exchange.server_ms()

    try:
        board, started, stopped = asyncio.run(run())
    except OSError as exc:
        return _fail(f"cannot serve the simulated exchange: {exc}")
    except KeyboardInterrupt:
        return 130
    _demo_summary(console, exchange, board, limits, args, started, stopped)
    return 0


def _demo_summary(
    console: Any,
    exchange: Any,
    board: Any,
    limits: Limits,
    args: argparse.Namespace,
    started: float,
    stopped: float,
) -> None:
    """What the exchange counted: per budget, weight and share used, from one window after the
    start (the opening burst's) to the end, as a rate over whole windows."""
    from .testing._stats import budget_use

    stats = exchange.stats
    uid_accounts = sum(1 for a in exchange.accounts if a.account_type.value == "PM_1")
    weight: dict[str, int] = {}
    for _, budget, charged in stats.arrivals:
        name = "sapi_uid" if budget.startswith("uid:") else budget
        weight[name] = weight.get(name, 0) + charged
    used, windows = budget_use(
        stats.arrivals,
        {name: limits[name] for name in weight},
        window=args.window,
        started_ms=started,
        stopped_ms=stopped,
        uid_accounts=uid_accounts,
    )
    by_status = stats.by_status
    lines = [
        "== summary ==",
        f"seconds: {(stopped - started) / 1000:.1f}",
        f"accounts: {len(exchange.accounts)}",
        f"calls: {board.calls}",
    ]
    for name in sorted(weight):
        lines.append(
            f"budget {name}: weight {weight[name]}, {used[name]:.1%} of the budget used "
            f"(over {windows} windows)"
        )
    lines += [
        f"429s: {by_status.get(429, 0)}",
        f"418s: {by_status.get(418, 0)}",
        f"errors: {board.errors_text()}",
        f"below uniMMR {args.alert_mmr:g}: {board.alerts()}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def _watch(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
    except ImportError as exc:
        return _needs("cli", exc)
    from ._session import Session
    from ._view import Board, Row, run_board

    try:
        accounts = _read_accounts(args.accounts)
    except ValueError as exc:
        return _fail(str(exc), 2)
    console = Console()
    board_box: list[Board] = []

    async def run() -> None:
        async with Session(base_url=args.base_url) as session:
            jobs = {}
            rows = {}
            for account in accounts:
                try:
                    client = session.client(account["api_key"], **account["keys"])
                except (ValueError, TypeError) as exc:
                    raise _Refused(f"{account['name']}: {exc}") from None
                jobs[client] = account["endpoint"]
                rows[client] = Row(account["name"], account["endpoint"])
            board = Board(rows, args.alert_mmr)
            board_box.append(board)
            assert isinstance(session.governor, Governor)
            await run_board(
                session,
                session.governor,
                jobs,
                board,
                every=args.every,
                seconds=args.seconds,
                console=console,
                title=f"binance-pm watch: {len(accounts)} accounts",
            )

    try:
        asyncio.run(run())
    except _Refused as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        pass
    if board_box:
        board = board_box[0]
        console.print(f"calls: {board.calls}", highlight=False)
        console.print(f"errors: {board.errors_text()}", highlight=False)
    return 0


class _Refused(Exception):
    pass


def _read_accounts(path: str) -> list[dict[str, Any]]:
    """The accounts of a ``watch`` file, checked; ``ValueError`` with a one-line reason."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    from ._poller import POLLABLE

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    entries = data.get("account")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path} lists no [[account]] tables")
    accounts = []
    base = os.path.dirname(os.path.abspath(path))
    for number, entry in enumerate(entries, 1):
        name = str(entry.get("name") or f"account {number}")
        api_key = entry.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError(f"{path}: {name} has no api_key")
        endpoint = entry.get("endpoint", "pm_pro_account")
        watchable = [e for e in POLLABLE if e != "classic_pm_account"]  # it needs an asset
        if endpoint not in watchable:
            raise ValueError(f"{path}: {name}: endpoint must be one of {', '.join(watchable)}")
        keys: dict[str, Any] = {}
        if isinstance(entry.get("secret"), str):
            keys["secret"] = entry["secret"]
        elif isinstance(entry.get("private_key_file"), str):
            key_path = os.path.join(base, os.path.expanduser(entry["private_key_file"]))
            try:
                with open(key_path, "rb") as file:
                    keys["private_key"] = file.read()
            except OSError as exc:
                raise ValueError(
                    f"{path}: {name}: cannot read private_key_file: {exc.strerror or exc}"
                ) from None
            if isinstance(entry.get("private_key_password"), str):
                keys["private_key_password"] = entry["private_key_password"]
        else:
            raise ValueError(f"{path}: {name} has neither secret nor private_key_file")
        accounts.append({"name": name, "api_key": api_key, "keys": keys, "endpoint": endpoint})
    return accounts


def _one_shot(args: argparse.Namespace) -> int:
    from ._client import AsyncClient
    from ._exceptions import BinancePMError

    api_key = os.environ.get("BINANCE_API_KEY", "").strip()
    secret = os.environ.get("BINANCE_API_SECRET", "").strip()
    key_file = os.environ.get("BINANCE_PRIVATE_KEY_FILE", "").strip()
    if not api_key or not (secret or key_file):
        return _fail(
            "no keys: set BINANCE_API_KEY, and BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_FILE", 2
        )
    keys: dict[str, Any] = {}
    if secret:
        keys["secret"] = secret
    else:
        try:
            with open(key_file, "rb") as file:
                keys["private_key"] = file.read()
        except OSError as exc:
            return _fail(f"cannot read BINANCE_PRIVATE_KEY_FILE: {exc.strerror or exc}", 2)
        password = os.environ.get("BINANCE_PRIVATE_KEY_PASSWORD")
        if password:
            keys["private_key_password"] = password
    kwargs = {"asset": args.asset} if getattr(args, "asset", None) else {}

    async def run() -> Any:
        async with AsyncClient(
            api_key, base_url=args.base_url, timeout=args.timeout, **keys
        ) as client:
            return await getattr(client, args.endpoint)(**kwargs)

    try:
        result = asyncio.run(run())
    except BinancePMError as exc:
        return _fail(str(exc))
    except (ValueError, TypeError) as exc:  # a key that does not load, a bad asset
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130
    if args.json:
        import msgspec

        print(msgspec.json.encode(result).decode())
        return 0
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError as exc:
        return _needs("cli", exc)
    # One two-column table per result (per asset, for balances): it fits any terminal.
    console = Console()
    items = result if isinstance(result, list) else [result]
    if not items:
        console.print("(no balances)")
    for item in items:
        title = ONE_SHOT[args.endpoint].split(" (")[0]
        asset = getattr(item, "asset", None)
        table = Table(title=f"{title}: {asset}" if asset else title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", justify="right")
        for name in getattr(type(item), "__struct_fields__", ()):
            if name != "asset":
                table.add_row(name, _cell(getattr(item, name)))
        console.print(table)
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return "0" if value == 0 else f"{value.normalize():f}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):  # SPAN risk units
        return ", ".join(f"{unit.asset} {_cell(unit.uni_maintain_usd)}" for unit in value)
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

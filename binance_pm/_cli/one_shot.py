"""``binance-pm pm-balance`` … ``classic-pm-account``: one call, keys from the environment.

A table (balances: a row per asset; an account: a field per row), or with ``--json`` the
decoded result as JSON: the exchange's field names, amounts as decimal strings with the
exchange's digits (``"0.00000000"``), ``null`` where the exchange sent an empty string.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._config import TIMEOUT
from .._endpoints import ACCOUNT_ENDPOINTS
from .._endpoints import asset_name as exchange_asset
from ._common import FAILED, INTERRUPTED, OK, USAGE, fail, needs, seconds
from .fit import fitted, plain_output
from .views import quiet_stdout

if TYPE_CHECKING:
    from rich.table import Table

#: A command per account endpoint: its help, from the endpoint table.
ONE_SHOT = {e.name: f"{e.title} ({e.label})" for e in ACCOUNT_ENDPOINTS.values()}
#: The balance table's columns: (field, heading). Amounts are rounded for the screen (the
#: digits that matter at their size); ``--json`` has them all.
BALANCE_COLUMNS = (
    ("asset", "asset"),
    ("total_wallet_balance", "wallet"),
    ("cross_margin_free", "margin free"),
    ("cross_margin_borrowed", "borrowed"),
    ("um_wallet_balance", "UM wallet"),
    ("um_unrealized_pnl", "UM uPnL"),
    ("cm_wallet_balance", "CM wallet"),
    ("cm_unrealized_pnl", "CM uPnL"),
    ("update_time", "updated (UTC)"),
)
JSON_HELP = (
    "print the decoded result as JSON instead of a table: the exchange's field names, amounts "
    "as decimal strings with the exchange's digits, null where the exchange sent an empty string"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in ONE_SHOT.items():
        one = commands.add_parser(
            name.replace("_", "-"),
            help=help_text,
            description=f"{help_text}. Keys come from BINANCE_API_KEY, and BINANCE_API_SECRET "
            "or BINANCE_PRIVATE_KEY_FILE (with BINANCE_PRIVATE_KEY_PASSWORD if encrypted).",
        )
        endpoint = ACCOUNT_ENDPOINTS[name]
        if "asset" in endpoint.params:
            required = "asset" in endpoint.required
            one.add_argument(
                "--asset",
                required=required,
                help="one asset, e.g. USDT (required)"
                if required
                else "one asset, e.g. USDT (default: every asset)",
            )
        one.add_argument(
            "--base-url", default=None, help="send the request here (default: the exchange)"
        )
        one.add_argument("--json", action="store_true", help=JSON_HELP)
        one.add_argument(
            "--timeout",
            type=seconds(),
            default=TIMEOUT,
            help=f"seconds in all (default {TIMEOUT:g})",
        )
        one.set_defaults(run=run, endpoint=name)


def asset_name(text: str | None) -> str | None:
    """The asset as the exchange names it (``"usdt"`` → ``"USDT"``); ``ValueError`` for one
    that cannot be an asset's name."""
    if text is None:
        return None
    try:
        return exchange_asset(text)
    except ValueError:
        told = f"--asset {text!r}: an asset is letters and digits, such as USDT"
        raise ValueError(told) from None


def run(args: argparse.Namespace) -> int:
    from .._client import AsyncClient
    from .._exceptions import BinancePMError

    try:
        asset = asset_name(getattr(args, "asset", None))
    except ValueError as exc:
        return fail(str(exc), USAGE)
    api_key = os.environ.get("BINANCE_API_KEY", "").strip()
    secret = os.environ.get("BINANCE_API_SECRET", "").strip()
    key_file = os.environ.get("BINANCE_PRIVATE_KEY_FILE", "").strip()
    if not api_key or not (secret or key_file):
        return fail(
            "no keys: set BINANCE_API_KEY, and BINANCE_API_SECRET or BINANCE_PRIVATE_KEY_FILE",
            USAGE,
        )
    keys: dict[str, Any] = {}
    if secret:
        keys["secret"] = secret
    else:
        try:
            with open(key_file, "rb") as file:
                keys["private_key"] = file.read()
        except OSError as exc:
            return fail(
                f"cannot read BINANCE_PRIVATE_KEY_FILE {key_file}: {exc.strerror or exc}", USAGE
            )
        password = os.environ.get("BINANCE_PRIVATE_KEY_PASSWORD")
        if password:
            keys["private_key_password"] = password
    kwargs = {"asset": asset} if asset is not None else {}

    async def call() -> Any:
        async with AsyncClient(
            api_key, base_url=args.base_url, timeout=args.timeout, **keys
        ) as client:
            return await getattr(client, args.endpoint)(**kwargs)

    try:
        result = asyncio.run(call())
    except BinancePMError as exc:
        return fail(str(exc), FAILED)
    except (ValueError, TypeError) as exc:  # a key that does not load
        return fail(str(exc), USAGE)
    except KeyboardInterrupt:
        return INTERRUPTED
    try:
        if args.json:
            print(json.dumps(exchange_json(result)), flush=True)
        else:
            _table(args.endpoint, result)
    except ImportError as exc:
        return needs("cli", exc)
    except BrokenPipeError:  # `pm-balance | head -1`: the reader has had enough
        quiet_stdout()
    return OK


def exchange_json(value: Any) -> Any:
    """A result as the exchange's JSON: its field names, amounts as decimal strings with its
    digits."""
    import msgspec

    return _plain(msgspec.to_builtins(value, builtin_types=(Decimal,)))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _table(endpoint: str, result: Any) -> None:
    """The result for a person: a table on a terminal (balances: the asset and the columns
    that fit whole, in order of importance; the others are named below it), plain lines with
    every figure whole otherwise (a pipe, a file, ``TERM=dumb``)."""
    from .views import make_console

    console = make_console()
    title = ACCOUNT_ENDPOINTS[endpoint].title
    items = result if isinstance(result, list) else [result]
    if endpoint in ("pm_balance", "pm_pro_balance"):
        if not items:
            console.print("(no balances)")
        elif plain_output(console):
            for item in items:
                _line(console, [(key, _word(name, getattr(item, name))) for name, key in _PLAIN])
        else:
            _balance_table(console, title, items)
        return
    for item in items:
        asset = getattr(item, "asset", None)
        heading = f"{title}: {asset}" if asset else title
        fields = [
            (name, getattr(item, name))
            for name in getattr(type(item), "__struct_fields__", ())
            if name != "asset"
        ]
        if plain_output(console):
            _line(console, [("account", heading)])
            for name, value in fields:
                _line(console, [(name, _word(name, value))])
            continue
        from rich.table import Table

        table = Table(title=heading, show_header=False)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", justify="right", overflow="fold")
        for name, value in fields:
            table.add_row(name, _cell(name, value))
        console.print(table)


#: Plain lines' names for the balance columns.
_PLAIN = [
    (name, heading.lower().replace(" ", "_").replace("(utc)", "utc"))
    for name, heading in BALANCE_COLUMNS
]
#: Which balance columns to keep first on a narrow terminal (indices into BALANCE_COLUMNS).
_BALANCE_ORDER = (0, 1, 2, 3, 4, 6, 5, 7, 8)


def _word(name: str, value: Any) -> str:
    """A plain line's value, whole and without spaces: times in ISO 8601 UTC."""
    if name == "update_time" and isinstance(value, int):
        moment = datetime.fromtimestamp(value / 1000, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _cell(name, value)


def _line(console: Any, pairs: list[tuple[str, str]]) -> None:
    text = " ".join(
        f"{key}={value}" if " " not in value else f"{key}={value!r}" for key, value in pairs
    )
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _balance_table(console: Any, title: str, items: list[Any]) -> None:
    from rich import box
    from rich.table import Table

    cells = [
        [_short(name, getattr(item, name, None)) for name, _ in BALANCE_COLUMNS] for item in items
    ]

    def make(kept: Sequence[int], measuring: bool) -> Table:
        table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        for index in kept:
            heading = BALANCE_COLUMNS[index][1]
            table.add_column(heading, justify="left" if index == 0 else "right", no_wrap=True)
        for row in cells:
            table.add_row(*(row[index] for index in kept))
        return table

    table, left_out = fitted(console, make, _BALANCE_ORDER)
    console.print(table)
    if left_out:
        names = ", ".join(BALANCE_COLUMNS[index][1] for index in left_out)
        console.print(
            f"(not shown at this width: {names}; a wider terminal, a pipe or --json has them)",
            highlight=False,
            markup=False,
        )


def _short(name: str, value: Any) -> str:
    """A balance table's cell: amounts with the decimals that matter at their size (eight
    below 1, two from 1,000,000), times to the second without the year."""
    if isinstance(value, Decimal) and value != 0:
        whole = len(str(abs(int(value)))) if abs(value) >= 1 else 0
        return f"{value:,.{max(2, 8 - whole)}f}"
    if name == "update_time" and isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, timezone.utc).strftime("%m-%d %H:%M:%S")
    return _cell(name, value)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "update_time" and isinstance(value, int):
        moment = datetime.fromtimestamp(value / 1000, timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Decimal):
        return "0" if value == 0 else f"{value.normalize():f}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):  # SPAN risk units
        return ", ".join(f"{unit.asset} {_cell('', unit.uni_maintain_usd)}" for unit in value)
    return str(value)

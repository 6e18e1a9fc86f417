"""``binance-pm pm-balance`` … ``classic-pm-account``: one call, keys from the environment."""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
from decimal import Decimal
from typing import Any

from ._common import fail, needs, positive

ONE_SHOT = {
    "pm_balance": "Portfolio Margin balances (GET /papi/v1/balance)",
    "pm_pro_balance": "PM Pro balances (GET /sapi/v1/portfolio/balance)",
    "pm_pro_account": "PM Pro account (GET /sapi/v1/portfolio/account)",
    "pm_pro_span_account": "PM Pro SPAN account (GET /sapi/v2/portfolio/account)",
    "classic_pm_account": "Classic PM account for one asset (GET /fapi/v1/pmAccountInfo)",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
            "--timeout", type=positive(float), default=10.0, help="seconds in all (10)"
        )
        one.set_defaults(run=run, endpoint=name)


def run(args: argparse.Namespace) -> int:
    from .._client import AsyncClient
    from .._exceptions import BinancePMError

    api_key = os.environ.get("BINANCE_API_KEY", "").strip()
    secret = os.environ.get("BINANCE_API_SECRET", "").strip()
    key_file = os.environ.get("BINANCE_PRIVATE_KEY_FILE", "").strip()
    if not api_key or not (secret or key_file):
        return fail(
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
            return fail(f"cannot read BINANCE_PRIVATE_KEY_FILE: {exc.strerror or exc}", 2)
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
        return fail(str(exc))
    except (ValueError, TypeError) as exc:  # a key that does not load, a bad asset
        return fail(str(exc), 2)
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
        return needs("cli", exc)
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

"""Decode: one answer body to a usable result, for each of the five endpoints.

Measures, side by side in one run, on the same bytes:

- binance_pm: the endpoint's decoder, straight to frozen msgspec Structs with ``Decimal``
  amounts (what every call returns);
- ``json.loads`` to dicts of strings (what python-binance and ccxt start from);
- ``orjson.loads`` to dicts, when installed;
- pydantic v2 models of the same fields, ``Decimal`` amounts, built with
  ``model_validate_json`` (the official SDK's approach), when installed.

The bodies are the simulated exchange's answers, which carry the documented fields with
realistic values: balances with 1 and with 10 assets, and the three account answers; and the
untidiness the exchange's examples show: ``""`` amounts (a balance list) and a grouped number
(``"122,559.90199491"``, an account), each of which should cost about what a tidy body does. Prints
the median time per decode in µs and each decoder's ratio to ``json.loads``, and the pydantic
to binance_pm ratio. Targets: no slower than ``json.loads``; at least 5 times pydantic's
speed. Run: ``python benchmarks/decode.py`` (``pip install -e '.[bench]'`` for the peers).
Finishes in about 20 seconds.
"""

from __future__ import annotations

import asyncio
import enum
import json
import statistics
import time
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from binance_pm import Session
from binance_pm._endpoints import ACCOUNT_ENDPOINTS
from binance_pm.testing import SimulatedExchange

ROUNDS = 7
ROUND_SECONDS = 0.15


async def bodies() -> dict[str, tuple[str, bytes]]:
    """(endpoint name, answer body) by label, from the simulated exchange, in process."""
    captured: dict[str, bytes] = {}

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        captured[response.url.path + "?" + ("asset" if "asset=" in str(response.url) else "")] = (
            response.content
        )

    exchange = SimulatedExchange(accounts=12, seed=2)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=exchange), event_hooks={"response": [keep]}
    )
    async with http, Session(base_url="http://sim", http=http) as session:
        by_type = {a.account_type.value: a for a in exchange.accounts}
        pm = session.client(by_type["PM_2"].api_key, **by_type["PM_2"].credentials())
        pro = session.client(by_type["PM_1"].api_key, **by_type["PM_1"].credentials())
        span = session.client(by_type["PM_3"].api_key, **by_type["PM_3"].credentials())
        await pm.pm_balance()
        await pm.pm_balance(asset="USDT")
        await pro.pm_pro_balance()
        await pro.pm_pro_balance(asset="USDT")
        await pro.pm_pro_account()
        await span.pm_pro_span_account()
        await pro.classic_pm_account(asset="USDT")
    found = {path: body for path, body in captured.items() if not path.endswith("/time?")}

    def ten(body: bytes) -> bytes:
        entries = json.loads(body)
        assets = ["USDT", "BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "USDC", "FDUSD"]
        out = [dict(entries[i % len(entries)], asset=asset) for i, asset in enumerate(assets)]
        return json.dumps(out, separators=(",", ":")).encode()

    def untidy(body: bytes, **changes: str) -> bytes:
        entries = json.loads(body)
        for entry in entries if isinstance(entries, list) else [entries]:
            entry.update(changes)
        return json.dumps(entries, separators=(",", ":")).encode()

    balances = ten(found["/papi/v1/balance?"])
    account = found["/sapi/v1/portfolio/account?"]
    return {
        "pm_balance, 1 asset": ("pm_balance", found["/papi/v1/balance?asset"]),
        "pm_balance, 10 assets": ("pm_balance", ten(found["/papi/v1/balance?"])),
        "pm_pro_balance, 1 asset": ("pm_pro_balance", found["/sapi/v1/portfolio/balance?asset"]),
        "pm_pro_balance, 10 assets": (
            "pm_pro_balance",
            ten(found["/sapi/v1/portfolio/balance?"]),
        ),
        'pm_balance, 10, "" amounts': (
            "pm_balance",
            untidy(balances, cmUnrealizedPNL="", umUnrealizedPNL=""),
        ),
        "pm_pro_account": ("pm_pro_account", account),
        'pm_pro_account, "122,559.9"': (
            "pm_pro_account",
            untidy(account, totalAvailableBalance="122,559.90199491"),
        ),
        "pm_pro_span_account": ("pm_pro_span_account", found["/sapi/v2/portfolio/account?"]),
        "classic_pm_account": ("classic_pm_account", found["/fapi/v1/pmAccountInfo?asset"]),
    }


# -- pydantic models of the same fields ------------------------------------------------------

_models: dict[type, Any] = {}


def pydantic_type(tp: Any) -> Any:
    """The pydantic counterpart of one of our field types."""
    import pydantic

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(pydantic_type(a) for a in typing.get_args(tp))]  # noqa: UP007
    if origin in (list, tuple):
        return list[pydantic_type(typing.get_args(tp)[0])]  # type: ignore[misc]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return str
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp not in _models:
            fields: dict[str, Any] = {}
            for field in msgspec.structs.fields(tp):
                default = ... if field.required else field.default
                fields[field.name] = (
                    pydantic_type(field.type),
                    pydantic.Field(default, alias=field.encode_name),
                )
            _models[tp] = pydantic.create_model(f"Pydantic{tp.__name__}", **fields)
        return _models[tp]
    return tp


def pydantic_decoder(response: Any) -> Callable[[bytes], Any] | None:
    try:
        import pydantic
    except ImportError:
        return None
    adapter = pydantic.TypeAdapter(pydantic_type(response))
    validate: Callable[[bytes], Any] = adapter.validate_json
    return validate


# -- timing -------------------------------------------------------------------------------------


def per_call(decode: Callable[[bytes], Any], body: bytes) -> float:
    """Median seconds per decode over ``ROUNDS`` rounds."""
    calls = 1
    while True:  # calls per round: enough for about ROUND_SECONDS
        started = time.perf_counter()
        for _ in range(calls):
            decode(body)
        if time.perf_counter() - started > ROUND_SECONDS / 10:
            break
        calls *= 2
    calls *= 10
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            decode(body)
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


def main() -> None:
    cases = asyncio.run(bodies())
    try:
        import orjson

        orjson_loads: Callable[[bytes], Any] | None = orjson.loads
    except ImportError:
        orjson_loads = None
    header = (
        f"{'answer':<30}{'bytes':>6}  {'binance_pm':>10}  {'json.loads':>10}  {'orjson':>8}"
        f"  {'pydantic':>8}   {'vs json.loads':>13}  {'pydantic / ours':>15}"
    )
    print("median µs per decode; ratios: ours / json.loads (lower is better), pydantic / ours")
    print(header)
    worst_json = 0.0
    worst_pydantic = float("inf")
    for label, (name, body) in cases.items():
        endpoint = ACCOUNT_ENDPOINTS[name]
        ours = per_call(endpoint.decode, body)
        plain = per_call(json.loads, body)
        fast = per_call(orjson_loads, body) if orjson_loads else None
        # pydantic's Decimal refuses "" and grouped numbers: it is measured on tidy bodies only.
        validate = pydantic_decoder(endpoint.response) if '"' not in label else None
        slow = per_call(validate, body) if validate else None
        worst_json = max(worst_json, ours / plain)
        if slow is not None:
            worst_pydantic = min(worst_pydantic, slow / ours)
        print(
            f"{label:<30}{len(body):>6}  {ours * 1e6:>10.2f}  {plain * 1e6:>10.2f}  "
            f"{(fast or 0) * 1e6:>8.2f}  {(slow or 0) * 1e6:>8.2f}   {ours / plain:>12.2f}x"
            f"  {(slow / ours if slow else 0):>14.1f}x"
        )
    print(
        f"worst case: {worst_json:.2f}x json.loads's time (target at most 1.00x); "
        f"pydantic at least {worst_pydantic:.1f}x slower (target at least 5x)"
    )
    # Where the time goes: building the Decimals. Measured on the largest answer.
    name, body = cases["pm_balance, 10 assets"]
    amounts = [
        value
        for entry in json.loads(body)
        for key, value in entry.items()
        if isinstance(value, str) and key != "asset"
    ]
    each = per_call(lambda _: [Decimal(value) for value in amounts], body) / len(amounts)
    ours = per_call(ACCOUNT_ENDPOINTS[name].decode, body)
    print(
        f"profile: Decimal(str) costs {each * 1e9:.0f} ns per amount; the 10-asset balance "
        f"list has {len(amounts)}, {each * len(amounts) / ours:.0%} of binance_pm's decode time"
    )


if __name__ == "__main__":
    main()

"""Quickstart: every endpoint of one account, against a stand-in exchange in this process.

The stand-in answers with the exchange's own documented examples and checks each request's
HMAC signature the way the exchange does, so this runs with no keys and no network. Point
``AsyncClient`` at the real exchange by leaving out ``http=`` and ``base_url=``.

Run: ``python examples/quickstart.py``
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx

from binance_pm import AsyncClient, AuthError

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"  # documented example
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
EXAMPLES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
ANSWERS = {
    "/papi/v1/balance": "papi_balance_list.json",
    "/sapi/v1/portfolio/balance": "sapi_portfolio_balance_zh.json",
    "/sapi/v1/portfolio/account": "sapi_v1_portfolio_account.json",
    "/sapi/v2/portfolio/account": "sapi_v2_portfolio_account.json",
    "/fapi/v1/pmAccountInfo": "fapi_pm_account_info.json",
}


def stand_in_exchange(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/v3/time":
        return httpx.Response(200, json={"serverTime": int(time.time() * 1000)})
    payload, _, signature = request.url.query.rpartition(b"&signature=")
    expected = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest().encode()
    if request.headers.get("X-MBX-APIKEY") != API_KEY or not hmac.compare_digest(
        expected, signature
    ):
        body = {"code": -1022, "msg": "Signature for this request is not valid."}
        return httpx.Response(400, content=json.dumps(body))
    return httpx.Response(200, content=(EXAMPLES / ANSWERS[request.url.path]).read_bytes())


async def main() -> None:
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(stand_in_exchange)) as http,
        AsyncClient(
            API_KEY, secret=SECRET, base_url="https://exchange.example", http=http
        ) as client,
    ):
        for balance in await client.pm_balance():
            print(
                f"PM balance      {balance.asset:5s} wallet {balance.total_wallet_balance}"
                f"  cm uPnL {balance.cm_unrealized_pnl}"
            )
        for pro in await client.pm_pro_balance():
            print(f"PM Pro balance  {pro.asset:5s} wallet {pro.total_wallet_balance}")
        info = await client.pm_pro_account()
        print(
            f"PM Pro account  uniMMR {info.uni_mmr}  status {info.account_status}"
            f"  available {info.total_available_balance}"
        )
        span = await client.pm_pro_span_account()
        units = ", ".join(f"{u.asset} {u.uni_maintain_usd}" for u in span.risk_unit_mm_list)
        print(
            f"PM Pro SPAN     uniMMR {span.uni_mmr}  type {span.account_type}  risk units {units}"
        )
        mx = await client.classic_pm_account(asset="BTC")
        print(
            f"Classic PM      {mx.asset} max transfer out {mx.max_withdraw_amount}"
            f" (USD {mx.max_withdraw_amount_usd})"
        )

    # A wrong secret is refused by the exchange and arrives as a typed error.
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(stand_in_exchange)) as http,
        AsyncClient(
            API_KEY, secret="not-the-secret", base_url="https://exchange.example", http=http
        ) as client,
    ):
        try:
            await client.pm_pro_account()
        except AuthError as error:
            print(f"Wrong secret    {type(error).__name__}: code {error.code}, {error.msg}")


if __name__ == "__main__":
    asyncio.run(main())

"""The exchange's documented answers, kept as files under ``tests/fixtures/``, and its error
shape: what the scripted and mocked exchanges answer when a test scripts nothing else."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

#: Per account endpoint's path, the file of its documented example answer.
DOCUMENTED = {
    "/papi/v1/balance": "papi_balance_list.json",
    "/papi/v1/account": "papi_account.json",
    "/sapi/v1/portfolio/balance": "sapi_portfolio_balance.json",
    "/sapi/v1/portfolio/account": "sapi_v1_portfolio_account.json",
    "/sapi/v2/portfolio/account": "sapi_v2_portfolio_account.json",
    "/fapi/v1/pmAccountInfo": "fapi_pm_account_info.json",
}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def error_body(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg}).encode()

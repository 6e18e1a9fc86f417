"""The accounts file of ``binance-pm watch``: ``[[account]]`` tables, each mistake one line.

::

    [[account]]
    name = "desk-1"
    api_key = "..."
    secret = "..."                    # or: private_key_file = "keys/desk-1.pem" (beside FILE)
    product = "PM Pro"                # or "PM", "PM Pro SPAN": what watch polls follows
    endpoint = "pm_pro_account"       # or choose the endpoint: pm_balance, pm_account, ...

With neither ``product`` nor ``endpoint``, watch asks the exchange for the account's product
when it starts (``AsyncClient.detect_product``) and polls its state endpoint.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: The keys an ``[[account]]`` table may have.
KEYS = (
    "name",
    "api_key",
    "secret",
    "private_key_file",
    "private_key_password",
    "product",
    "endpoint",
)


def read_accounts(path: str) -> list[dict[str, Any]]:
    """The accounts of a ``watch`` file, checked: a list of ``{"name", "api_key", "keys",
    "product", "endpoint"}`` (``product`` an account type or ``None``; ``endpoint`` ``None``
    when the product is to be found out); ``ValueError`` with a one-line reason naming the
    file, the account and the key for any mistake."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"account"})
    if unknown:
        raise ValueError(f"{path}: unknown table or key {unknown[0]!r}; only [[account]] tables")
    entries = data.get("account")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path} lists no [[account]] tables")
    accounts = []
    names: set[str] = set()
    jobs: set[tuple[str, str]] = set()
    base = os.path.dirname(os.path.abspath(path))
    for number, entry in enumerate(entries, 1):
        account = _account(path, base, number, entry)
        if account["name"] in names:
            raise ValueError(f"{path}: account {account['name']!r} is listed twice")
        names.add(account["name"])
        job = (account["api_key"], account["endpoint"] or "")
        if job in jobs:
            raise ValueError(
                f"{path}: {account['name']}: the same api_key and endpoint as an account above"
            )
        jobs.add(job)
        accounts.append(account)
    return accounts


def _account(path: str, base: str, number: int, entry: Any) -> dict[str, Any]:
    from .._endpoints import ENDPOINTS, PRODUCT_NAME, STATE_ENDPOINT, account_type
    from .._jobs import POLLABLE

    if not isinstance(entry, dict):
        raise ValueError(f"{path}: account {number} is not a table")
    name = entry.get("name", f"account {number}")
    where = f"{path}: account {number}"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: name must be a non-empty string, not {name!r}")
    where = f"{path}: {name}"
    for key in entry:
        if key not in KEYS:
            raise ValueError(f"{where}: unknown key {key!r}; the keys are {', '.join(KEYS)}")
    for key, value in entry.items():
        if key != "name" and not isinstance(value, str):
            raise ValueError(f"{where}: {key} must be a string, not {type(value).__name__}")
    api_key = entry.get("api_key")
    if not api_key:
        raise ValueError(f"{where}: api_key is missing")
    product = None
    if "product" in entry:
        try:
            product = account_type(entry["product"]).value
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    endpoint = entry.get("endpoint", STATE_ENDPOINT[product] if product else None)
    watchable = [e for e in POLLABLE if e != "classic_pm_account"]  # it needs an asset
    if endpoint is not None and endpoint not in watchable:
        raise ValueError(f"{where}: endpoint must be one of {', '.join(watchable)}")
    if product and endpoint and product not in ENDPOINTS[endpoint].serves:
        raise ValueError(
            f"{where}: {endpoint} does not answer {PRODUCT_NAME[product]} accounts; "
            f"{STATE_ENDPOINT[product]} does"
        )
    has_secret, key_file = "secret" in entry, entry.get("private_key_file")
    if has_secret and key_file is not None:
        raise ValueError(f"{where}: give secret or private_key_file, not both")
    if "private_key_password" in entry and key_file is None:
        raise ValueError(f"{where}: private_key_password without private_key_file")
    keys: dict[str, Any] = {}
    if has_secret:
        if not entry["secret"]:
            raise ValueError(f"{where}: secret is empty")
        keys["secret"] = entry["secret"]
    elif key_file is not None:
        key_path = os.path.join(base, os.path.expanduser(key_file))
        try:
            with open(key_path, "rb") as file:
                keys["private_key"] = file.read()
        except OSError as exc:
            raise ValueError(
                f"{where}: cannot read private_key_file {key_path}: {exc.strerror or exc}"
            ) from None
        if "private_key_password" in entry:
            keys["private_key_password"] = entry["private_key_password"]
    else:
        raise ValueError(f"{where}: neither secret nor private_key_file is given")
    return {
        "name": name,
        "api_key": api_key,
        "keys": keys,
        "product": product,
        "endpoint": endpoint,
    }

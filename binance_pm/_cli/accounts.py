"""The accounts file of ``binance-pm watch``."""

from __future__ import annotations

import os
import sys
from typing import Any


def read_accounts(path: str) -> list[dict[str, Any]]:
    """The accounts of a ``watch`` file, checked; ``ValueError`` with a one-line reason."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    from .._poller import POLLABLE

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

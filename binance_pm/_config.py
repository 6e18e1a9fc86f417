"""Checking what a caller configures: hosts, receive windows and seconds."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from ._endpoints import PRODUCTION_HOSTS
from ._http import scrub
from ._limits import FAMILIES, Family

#: The defaults of every Session and client: ``recvWindow`` (ms), a call's seconds in all, and
#: the retries of a call that got a 5xx or no answer.
RECV_WINDOW = 5000
TIMEOUT = 10.0
MAX_RETRIES = 2
#: Seconds a fleet member's lease on an account lasts unless renewed, by default.
LEASE_TTL = 10.0
MAX_RECV_WINDOW = 60_000
#: The longest ``timeout`` or ``every`` accepted: a day.
MAX_SECONDS = 86_400.0


def check_recv_window(recv_window: int) -> int:
    """``recv_window`` if the exchange accepts it (1 to 60,000 ms), else ``ValueError``."""
    if isinstance(recv_window, bool) or not isinstance(recv_window, int):
        raise TypeError(f"recv_window must be an int of milliseconds, not {recv_window!r}")
    if not 0 < recv_window <= MAX_RECV_WINDOW:
        raise ValueError(f"recv_window must be 1 to {MAX_RECV_WINDOW} ms, not {recv_window}")
    return recv_window


def check_seconds(name: str, seconds: float) -> float:
    """``seconds`` as a float if it is a positive, finite number of seconds up to a day."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be seconds (a number), not {seconds!r}")
    if not 0 < seconds <= MAX_SECONDS:  # NaN and inf fail this too
        raise ValueError(f"{name} must be positive seconds up to a day, not {seconds!r}")
    return float(seconds)


def resolve_hosts(base_url: str | None, hosts: Mapping[str, str] | None) -> dict[Family, str]:
    resolved: dict[Family, str] = dict(PRODUCTION_HOSTS)
    if base_url is not None:
        resolved = dict.fromkeys(FAMILIES, base_url)
    for family, url in (hosts or {}).items():
        if family not in FAMILIES:
            raise ValueError(
                f"unknown API family {family!r}; the families are {', '.join(FAMILIES)}"
            )
        resolved[family] = url
    for family, url in resolved.items():
        if not isinstance(url, str):
            raise TypeError(f"the {family} host must be a str URL, not {type(url).__name__}")
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"the {family} host must be an http(s) URL, not {scrub(url)!r}")
        if parsed.query or parsed.fragment:
            raise ValueError(f"the {family} host must have no query, not {scrub(url)!r}")
        resolved[family] = url.rstrip("/")
    return resolved


def check_source_address(address: str | None, *, given: object) -> str | None:
    """``address`` if it is an IP address this machine may send from (``"10.0.0.2"``,
    ``"::1"``); ``None`` stays ``None``. Not with a caller's own client or sender, which
    choose their own."""
    if address is None:
        return None
    if not isinstance(address, str):
        raise TypeError(f"source_address must be an IP address, not {type(address).__name__}")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"source_address must be an IP address, not {address!r}") from None
    if given is not None:
        raise ValueError(
            "source_address binds the Session's own connections: bind your own http= client or "
            "sender= instead (httpx.AsyncHTTPTransport(local_address=...))"
        )
    return address

"""Reading the exchange's rate-limit headers: used weight per budget, and ``Retry-After``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_SAPI_PREFIXES = ((b"x-sapi-used-ip-weight-", "ip"), (b"x-sapi-used-uid-weight-", "uid"))
_MBX_PREFIXES = ((b"x-mbx-used-weight-", "ip"),)
_INTERVAL_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def used_weights(headers: Mapping[str, str], family: str) -> dict[str, int]:
    """The used-weight headers of an answer, by budget kind (``"ip"``, ``"uid"``).

    The interval is read from each header's name (``-1M``, ``-1D``…), and where one kind is
    reported for several intervals, the shortest one is taken: these endpoints' limits are
    per minute. This runs for every answer, so names are matched as bytes, on httpx's raw
    header list when there is one (its ``items()`` decodes every header first).
    """
    prefixes = _SAPI_PREFIXES if family == "sapi" else _MBX_PREFIXES
    raw = getattr(headers, "raw", None)
    pairs: Iterable[tuple[bytes, bytes | str]] = (
        raw if raw is not None else ((k.encode("latin-1"), v) for k, v in headers.items())
    )
    found: dict[str, tuple[float, int]] = {}
    for name, value in pairs:
        if name[:2] not in (b"x-", b"X-"):
            continue
        lower = name.lower()
        for prefix, kind in prefixes:
            if lower.startswith(prefix):
                seconds = interval_seconds(lower[len(prefix) :].decode("latin-1"))
                if seconds is None:
                    continue
                try:
                    used = int(value)
                except ValueError:
                    continue
                if kind not in found or seconds < found[kind][0]:
                    found[kind] = (seconds, used)
    return {kind: used for kind, (_, used) in found.items()}


def interval_seconds(suffix: str) -> float | None:
    """``"1m"`` → 60: the interval a header name ends with, or ``None`` if it is not one."""
    if len(suffix) < 2 or suffix[-1] not in _INTERVAL_SECONDS or not suffix[:-1].isdigit():
        return None
    return int(suffix[:-1]) * _INTERVAL_SECONDS[suffix[-1]]


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` in seconds, or ``None`` when absent or not a number of seconds."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None

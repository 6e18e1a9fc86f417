"""Reading the exchange's rate-limit headers: used weight per budget, and ``Retry-After``.

Header values come from the network, so nothing here trusts them: a used weight that is not a
plain whole number of at most ``MAX_DIGITS`` ASCII digits is ignored (``"²"`` is a digit to
``str.isdigit``, not to ``int``), and a ``Retry-After`` is capped
at the longest ban the exchange documents (three days), whatever it says (``inf``, ``1e999``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
from multidict import CIMultiDict, CIMultiDictProxy

#: The longest IP ban the exchange documents: no refusal shuts a budget for longer.
LONGEST_BAN = 3 * 86_400.0
#: Used weights beyond this many digits are not a count the exchange would send.
MAX_DIGITS = 9

_SAPI_PREFIXES = ((b"x-sapi-used-ip-weight-", "ip"), (b"x-sapi-used-uid-weight-", "uid"))
_MBX_PREFIXES = ((b"x-mbx-used-weight-", "ip"),)
_INTERVAL_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHORTEST = len(b"x-mbx-used-weight-1m")
_THIRD = frozenset([*b"mMsS", *"mMsS"])  # x-[m]bx-…, x-[s]api-…, as bytes or text
_PER_MINUTE_MBX = (("x-mbx-used-weight-1m", "ip"),)
_PER_MINUTE_SAPI = (("x-sapi-used-ip-weight-1m", "ip"), ("x-sapi-used-uid-weight-1m", "uid"))
_ABSENT = object()


class Fields(Mapping[str, str]):
    """An answer's header fields as they came, looked up case-blind, each decoded only when it
    is read: most of an answer's twenty-odd fields never are (one, the used weight, is on
    every answer's path). ``raw`` is the ``(name, value)`` byte pairs in order, as httpx's
    ``Headers.raw`` is; a name given more than once is found at its first, and iterated,
    counted and listed by :meth:`items` and :meth:`values` as often as it was given (as a
    multidict does)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, name: str, default: Any = None) -> Any:
        try:
            wanted = name.lower().encode("latin-1")
        except (AttributeError, UnicodeEncodeError):
            return default
        size = len(wanted)
        for key, value in self.raw:
            if len(key) == size and key.lower() == wanted:
                return value.decode("latin-1")
        return default

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.raw if k.lower() == wanted]

    def __getitem__(self, name: str) -> str:
        value = self.get(name, _ABSENT)
        if value is _ABSENT:
            raise KeyError(name)
        return value  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name, _ABSENT) is not _ABSENT

    def __iter__(self) -> Iterator[str]:
        return (key.decode("latin-1") for key, _ in self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every field, in order (a name given twice, twice)."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]

    def values(self) -> list[str]:  # type: ignore[override]
        """Every field's value, in order."""
        return [v.decode("latin-1") for _, v in self.raw]

    def __repr__(self) -> str:
        return f"Fields({self.items()!r})"


_CASE_BLIND = (Fields, CIMultiDictProxy, CIMultiDict, httpx.Headers)


def used_weights(headers: Mapping[str, str], family: str) -> dict[str, int]:
    """The used-weight headers of an answer, by budget kind (``"ip"``, ``"uid"``).

    These endpoints' limits are per minute, so the ``-1M`` count is taken when the answer has
    one; it is looked up by name, case-blind, when the headers can do that cheaply (the
    Session's own :class:`Fields`, aiohttp's multidict, httpx's headers). Otherwise the
    interval is read from each header's name (``-1M``, ``-1D``…) and, where one kind is
    reported for several, the shortest is taken; names are then matched as bytes, on the raw
    pairs when there are some (``Fields.raw``, httpx's ``Headers.raw``).
    """
    if isinstance(headers, _CASE_BLIND):
        found: dict[str, int] = {}
        for name, kind in _PER_MINUTE_SAPI if family == "sapi" else _PER_MINUTE_MBX:
            value = headers.get(name)
            if value is not None and len(value) <= MAX_DIGITS and _digits(value):
                found[kind] = int(value)
        if found:
            return found
    return _scan(headers, family)


def _scan(headers: Mapping[str, str], family: str) -> dict[str, int]:
    prefixes = _SAPI_PREFIXES if family == "sapi" else _MBX_PREFIXES
    raw = getattr(headers, "raw", None)
    pairs: Iterable[tuple[bytes, bytes | str]] = (
        raw if raw is not None else ((k.encode("latin-1"), v) for k, v in headers.items())
    )
    found: dict[str, tuple[float, int]] = {}
    for name, value in pairs:
        # Most of an answer's ~20 headers are not these: two cheap looks turn them away.
        if len(name) < _SHORTEST or name[2] not in _THIRD:
            continue
        lower = name.lower()
        for prefix, kind in prefixes:
            if lower.startswith(prefix):
                seconds = interval_seconds(lower[len(prefix) :].decode("latin-1"))
                if seconds is None:
                    continue
                if len(value) > MAX_DIGITS or not _digits(value):
                    continue
                used = int(value)
                if kind not in found or seconds < found[kind][0]:
                    found[kind] = (seconds, used)
    return {kind: used for kind, (_, used) in found.items()}


def _digits(value: str | bytes) -> bool:
    """Whether ``value`` is ASCII digits alone: ``str.isdigit`` also passes ``"²"``."""
    return value.isascii() and value.isdigit()


def interval_seconds(suffix: str) -> float | None:
    """``"1m"`` → 60: the interval a header name ends with, or ``None`` if it is not one."""
    if not 2 <= len(suffix) <= 6 or suffix[-1] not in _INTERVAL_SECONDS or not _digits(suffix[:-1]):
        return None
    return int(suffix[:-1]) * _INTERVAL_SECONDS[suffix[-1]]


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` in seconds, at most ``LONGEST_BAN``; ``None`` when absent, negative or
    not a number of seconds."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None or not value.isascii():
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, LONGEST_BAN)

"""The errors binance_pm raises: one tree, so callers can catch as broadly as they like.

::

    BinancePMError                   anything this package raises on purpose
     ├── APIError                    the exchange (or a proxy in front of it) answered with an error
     │    ├── RateLimitError         429: too much request weight (retry_after)
     │    ├── IPBannedError          418: the IP is banned (retry_after, banned_until)
     │    ├── AuthError              401, -2014, -2015, -1022: key, IP, rights or signature refused
     │    ├── TimestampError         -1021: timestamp outside recvWindow (clock skew)
     │    ├── BadRequestError        any other 4xx
     │    └── ServerError            5xx: the execution status is unknown
     ├── TransportError              no answer: connection refused or reset, timeout
     ├── DecodeError                 an answer that does not have the documented shape
     ├── GovernorTimeout             the rate-limit budget had no room before the call's deadline
     │    └── GovernorUnavailable    the shared budget's store could not be reached in time
     └── SessionError                the Session is closed, or belongs to another event loop

Every error names the endpoint it came from and the account as a masked API key; none ever holds a
secret. ``str(error)`` is one line a person can act on.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

__all__ = [
    "APIError",
    "AuthError",
    "BadRequestError",
    "BinancePMError",
    "DecodeError",
    "GovernorTimeout",
    "GovernorUnavailable",
    "IPBannedError",
    "RateLimitError",
    "ServerError",
    "SessionError",
    "TimestampError",
    "TransportError",
]

AUTH_CODES = frozenset({-2014, -2015, -1022})
TIMESTAMP_CODE = -1021
_BANNED_UNTIL = re.compile(r"banned until (\d{10,16})", re.ASCII)


def mask_key(api_key: str) -> str:
    """Show enough of an API key to tell accounts apart, never enough to use it."""
    if len(api_key) <= 8:
        return "****"
    return f"{api_key[:4]}…{api_key[-4:]}"


class BinancePMError(Exception):
    """Base class of every error binance_pm raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling of exceptions: rebuild
        # from the message and the attributes instead, for every class of the tree.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[BinancePMError], args: tuple[object, ...], state: dict[str, object]
) -> BinancePMError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class APIError(BinancePMError):
    """The exchange answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the exchange's error code (``-1021`` …), or ``None`` when the body was not the
            exchange's JSON (an HTML page from a proxy or the CDN).
        msg: the exchange's message, or a short excerpt of a non-JSON body.
        endpoint: ``"GET /papi/v1/balance"`` and the like.
        api_key: the account's API key, masked.
        retry_after: seconds from the ``Retry-After`` header, when the answer had one.
        hint: what the error may mean beyond the exchange's words (a ``-2015`` from an
            endpoint of another product than the account's), or ``None``.
    """

    def __init__(
        self,
        status: int,
        code: int | None,
        msg: str,
        *,
        endpoint: str,
        api_key: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.msg = msg
        self.endpoint = endpoint
        self.api_key = api_key
        self.retry_after = retry_after
        self.hint = hint
        super().__init__(self._describe())

    def _describe(self) -> str:
        code = f" code {self.code}" if self.code is not None else ""
        who = f" [account {self.api_key}]" if self.api_key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.endpoint}: HTTP {self.status}{code}: {self.msg}{hint}{who}"


class RateLimitError(APIError):
    """429: the request weight of a window was used up. Wait ``retry_after`` seconds."""


class IPBannedError(APIError):
    """418: the IP is banned for repeatedly breaking the rate limits.

    ``banned_until`` is read from the exchange's message (``IP banned until 1660090423228``) as an
    aware UTC datetime, or ``None`` when the message does not say.
    """

    @property
    def banned_until(self) -> datetime | None:
        """Never raises: ``None`` also for a time no calendar holds (year 318857)."""
        until = ban_until_ms(self.msg)
        if until is None:
            return None
        try:
            return datetime.fromtimestamp(until / 1000, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None


class AuthError(APIError):
    """The API key, its IP whitelist, its permissions or the signature were refused; or (the
    same ``-2015``) the key's account is of another product than the endpoint serves, which
    ``hint`` then says."""


class TimestampError(APIError):
    """-1021: the request's timestamp fell outside ``recvWindow`` of the exchange's clock."""


class BadRequestError(APIError):
    """Any other 4xx: the request itself is wrong (a missing parameter, an illegal value)."""


class ServerError(APIError):
    """5xx: the exchange failed; whether the request took effect is unknown."""


class TransportError(BinancePMError):
    """No answer came: the connection failed, was reset, or the call ran out of time."""

    def __init__(self, message: str, *, endpoint: str, api_key: str | None = None) -> None:
        self.message = message
        self.endpoint = endpoint
        self.api_key = api_key
        who = f" [account {api_key}]" if api_key else ""
        super().__init__(f"{endpoint}: {message}{who}")


class DecodeError(BinancePMError):
    """The answer's body does not have the documented shape.

    Attributes:
        endpoint: the endpoint that answered.
        path: where in the body it went wrong, as a JSON path (``$[0].totalWalletBalance``), or
            ``None`` when the body was not JSON at all.
    """

    def __init__(self, message: str, *, endpoint: str, path: str | None = None) -> None:
        self.message = message
        self.endpoint = endpoint
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(f"{endpoint}: cannot decode the answer: {message}{where}")


class GovernorTimeout(BinancePMError):
    """The rate-limit budget had no room for the call before its deadline; nothing was sent.

    ``retry_after`` is the governor's estimate of when there will be room, or ``None`` when that
    depends on answers still to come.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        api_key: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.endpoint = endpoint
        self.api_key = api_key
        self.retry_after = retry_after
        who = f" [account {api_key}]" if api_key else ""
        super().__init__(f"{endpoint}: {message}{who}")


class GovernorUnavailable(GovernorTimeout):
    """The shared rate-limit store (Redis) could not be reached before the call's deadline.

    Nothing was sent: without the shared count, a request could overspend the budget that
    other processes use too. ``Governor(on_store_error="local")`` falls back to this process's
    own count instead.
    """


def error_class(status: int, code: int | None) -> type[APIError]:
    """Which error class an exchange answer of this status and code stands for."""
    if status == 429:
        return RateLimitError
    if status == 418:
        return IPBannedError
    if code == TIMESTAMP_CODE:
        return TimestampError
    if status == 401 or code in AUTH_CODES:
        return AuthError
    if status >= 500:
        return ServerError
    return BadRequestError


class SessionError(BinancePMError, RuntimeError):
    """The Session cannot send: it is closed, or it belongs to another event loop."""


_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def parse_error_body(body: bytes) -> tuple[int | None, str]:
    """The exchange's ``{"code": -1021, "msg": "..."}`` as ``(code, msg)``; for any other body
    ``(None, a short one-line excerpt)``. Never raises."""
    import json

    try:
        parsed = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        code, msg = parsed.get("code"), parsed.get("msg", "")
        if isinstance(code, int) and not isinstance(code, bool) and abs(code) < 10**9:
            return code, str(msg)[:500] if isinstance(msg, str) else ""
    text = _SPACE.sub(" ", _TAGS.sub(" ", body[:2000].decode("utf-8", "replace"))).strip()
    return None, text[:200] or "(empty body)"


def ban_until_ms(msg: str) -> int | None:
    """The epoch ms of ``IP banned until 1660090423228`` in a 418's message, or ``None``."""
    match = _BANNED_UNTIL.search(msg)
    return int(match.group(1)) if match else None

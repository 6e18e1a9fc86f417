"""One call's fixed parts and how far it has gone, and what an answer to it means: the error
class of an answer that is not a success, and the error the call's timeout raises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from ._credentials import Credentials
from ._endpoints import API_TIME, Endpoint, wrong_product_hint
from ._exceptions import (
    APIError,
    BinancePMError,
    GovernorTimeout,
    TransportError,
    ban_until_ms,
    error_class,
    parse_error_body,
)
from ._headers import LONGEST_BAN, Fields, retry_after_seconds
from ._http import Answer, scrub

# What a call was doing, for the error its timeout raises.
CLOCK, BUDGET, SEND, BACKOFF = "clock", "budget", "send", "backoff"


class Call:
    """One call's fixed parts; how far it has gone (what :func:`binance_pm._retry.decide`
    reads); and what it is doing now, for the error its timeout raises.

    ``ends`` is when the call must be over, on anyio's clock (the event loop's under asyncio).
    """

    __slots__ = (
        "account",
        "credentials",
        "endpoint",
        "ends",
        "error",
        "masked",
        "on_grant",
        "phase",
        "query",
        "recv_window",
        "refusals",
        "refused",
        "resynced",
        "retries",
    )

    def __init__(
        self,
        endpoint: Endpoint[Any],
        query: str,
        credentials: Credentials | None,
        recv_window: int,
        on_grant: Callable[[], None] | None,
        ends: float,
    ) -> None:
        self.endpoint = endpoint
        self.query = query
        self.credentials = credentials
        self.account = credentials.api_key if credentials is not None else ""
        self.masked = credentials.masked_key if credentials is not None else None
        self.recv_window = recv_window
        self.on_grant = on_grant
        self.ends = ends
        self.retries = 0  # backoffs slept after a 5xx or no answer
        self.refusals = 0  # 429s and 418s waited out
        self.resynced = False  # whether a -1021 had the clock measured again
        self.refused: APIError | None = None  # the exchange's last 429 or 418
        self.phase = BUDGET
        self.error: BinancePMError | None = None

    def too_late(self, seconds: float) -> BinancePMError:
        """The error for a call whose timeout came first (``seconds`` long)."""
        label, masked = self.endpoint.label, self.masked
        if self.phase == BACKOFF and self.error is not None:
            return self.error
        if self.phase == BUDGET:
            return GovernorTimeout(
                f"no room in the rate-limit budget within the call's timeout of {seconds:g} s; "
                "nothing was sent",
                endpoint=label,
                api_key=masked,
            )
        if self.phase == CLOCK:
            return TransportError(
                f"no answer from the exchange clock ({API_TIME.label}) within the call's "
                f"timeout of {seconds:g} s",
                endpoint=label,
                api_key=masked,
            )
        return TransportError(
            f"no answer within the call's timeout of {seconds:g} s",
            endpoint=label,
            api_key=masked,
        )


def ban_headers(answer: Answer, now_ms: int) -> Mapping[str, str]:
    """A 418's headers, with the ban's end from its body as ``Retry-After`` when the header
    is missing (capped at the longest documented ban)."""
    headers = answer.headers
    if retry_after_seconds(headers) is not None:
        return headers
    until = ban_until_ms(parse_error_body(answer.body)[1])
    if until is None:
        return headers
    seconds = min(max((until - now_ms) / 1000.0, 0.0), LONGEST_BAN)
    if isinstance(headers, Fields):  # the Session's own sender's: the same kind, one more
        return Fields((*headers.raw, (b"Retry-After", f"{seconds:.3f}".encode())))
    with_ban = CIMultiDict(headers)
    with_ban["Retry-After"] = f"{seconds:.3f}"
    return CIMultiDictProxy(with_ban)


#: What the exchange answers a key calling an endpoint of another product (as for a bad key).
WRONG_PRODUCT_CODE = -2015


def api_error(call: Call, answer: Answer) -> APIError:
    """The error an answer that is not a success stands for (a redirect says where to)."""
    status = answer.status
    code, msg = parse_error_body(answer.body)
    msg = scrub(msg)  # a proxy's page may quote the request it refused
    if 300 <= status < 400:
        code = None
        location = scrub(answer.headers.get("location") or "")
        parts = urlsplit(location) if location else None
        where = f" to {parts.scheme}://{parts.netloc}" if parts and parts.netloc else ""
        msg = (
            f"a redirect{where}, not followed: a signed request goes only to the host "
            "it was signed for"
        )
    return error_class(status, code)(
        status,
        code,
        msg,
        endpoint=call.endpoint.label,
        api_key=call.masked,
        retry_after=retry_after_seconds(answer.headers),
        hint=wrong_product_hint(call.endpoint) if code == WRONG_PRODUCT_CODE else None,
    )


def misfiled(call: Call, answer: Answer) -> APIError | None:
    """A 2xx whose body is the exchange's error (``{"code": -1000, "msg": ...}``)."""
    error = api_error(call, answer)
    return error if error.code is not None else None

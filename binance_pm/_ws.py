"""One user data stream connection: its URL, its handshake, and what a refused one means.

- A listen key goes into a URL only if it is one (the exchange's keys are letters and digits):
  a key such as ``../../admin`` or ``k?x=1`` from a hostile answer never reaches the path.
- A handshake never follows a redirect: the stream of an account is read from the host it was
  asked of, or not at all (signed REST never follows one either).
- A refused handshake is read like a REST refusal: 429 (:class:`RateLimitError`) and 418
  (:class:`IPBannedError`) with their ``Retry-After``, which the caller hands to the
  connection budget; anything else is a :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import anyio
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from ._attempts import Attempt
from ._endpoints import STREAMS
from ._exceptions import (
    BinancePMError,
    DecodeError,
    IPBannedError,
    RateLimitError,
    TransportError,
)
from ._headers import retry_after_seconds

#: The stream path of each product, and of its combined streams (several keys on one
#: connection: a reading the PM pages do not document, behind ``streams_per_connection``).
WS_PATH = {product: stream.ws_path for product, stream in STREAMS.items()}
COMBINED_PATH = {product: stream.combined_path for product, stream in STREAMS.items()}
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 0.5
SETTLE_WITHIN = 1.0
MAX_MESSAGE = 1 << 20
#: What a listen key may be: the exchange's are 60-odd letters and digits.
_KEY = re.compile(r"[A-Za-z0-9]{16,128}", re.ASCII)


def stream_url(host: str, product: str, keys: list[str], *, combined: bool) -> str:
    """The URL of a stream of ``keys``: ``host`` + the product's path + the key, or a combined
    stream's ``?streams=<key1>/<key2>/…``. :class:`DecodeError` for a key that is not one
    (its text is not shown: it may be a credential)."""
    for key in keys:
        if not _KEY.fullmatch(key):
            raise DecodeError(
                f"the exchange returned a listen key that is not one ({len(key)} characters, "
                "not all letters and digits)",
                endpoint=f"stream {WS_PATH[product]}",
                path="$.listenKey",
            )
    if combined:
        return f"{host}{COMBINED_PATH[product]}?streams={'/'.join(keys)}"
    (key,) = keys
    return f"{host}{WS_PATH[product]}{key}"


#: A combined stream's handshake answered one of these: the host has no combined streams, or
#: none of that length (414: the URL is too long for it).
NOT_SERVED = (400, 404, 414)


class CombinedRefused(TransportError):
    """The host does not serve combined streams: connect one key a connection instead."""


class _Redirected(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


async def _no_redirects(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
    response = await handler(request)
    if 300 <= response.status < 400:
        response.close()
        raise _Redirected(response.status)
    return response


def ws_session(source_address: str | None = None) -> aiohttp.ClientSession:
    """The client session streams connect through: no pool limit (one connection per
    stream, held), no redirects followed; from ``source_address`` when one is given."""
    local = None if source_address is None else (source_address, 0)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, local_addr=local), middlewares=(_no_redirects,)
    )


async def handshake(
    http: aiohttp.ClientSession,
    url: str,
    attempt: Attempt,
    *,
    endpoint: str,
    api_key: str | None,
    combined: bool = False,
) -> aiohttp.ClientWebSocketResponse[bool]:
    """Open the stream at ``url``, spending ``attempt`` (its outcome goes back to the
    budget); the error says what went wrong and never holds the URL (it holds the key)."""
    failure: BinancePMError | None = None
    status: int | None = None
    retry_after: float | None = None
    try:
        with anyio.move_on_after(CONNECT_TIMEOUT):
            socket = await http.ws_connect(
                url,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                autoping=False,  # the reader answers pings; the Streamer's pulse sends them
                max_msg_size=MAX_MESSAGE,
            )
            attempt.sent(101)
            return socket
        failure = TransportError(
            f"no handshake within {CONNECT_TIMEOUT:g} s", endpoint=endpoint, api_key=api_key
        )
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status
        retry_after = retry_after_seconds(exc.headers) if exc.headers else None
        failure = refusal(status, retry_after, endpoint, api_key)
        if combined and status in NOT_SERVED:
            failure = CombinedRefused(
                f"combined streams are not served (HTTP {status})", endpoint=endpoint
            )
    except _Redirected as exc:
        status = exc.status
        failure = TransportError(
            f"the stream was redirected (HTTP {exc.status}); redirects are not followed",
            endpoint=endpoint,
            api_key=api_key,
        )
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        failure = TransportError(f"cannot connect: {reason}", endpoint=endpoint, api_key=api_key)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        failure = TransportError(
            f"cannot connect: {type(exc).__name__}", endpoint=endpoint, api_key=api_key
        )
    finally:
        attempt.sent(status, retry_after)  # no-op once sent; a cancelled handshake counts too
        # With a shared store every process learns of it; a store that hangs costs a stop
        # no more than this (the attempt then lapses there by itself).
        with anyio.move_on_after(SETTLE_WITHIN, shield=True):
            await attempt.settle()
    raise failure  # outside the handler: aiohttp's text holds the URL, and so the key


def refusal(
    status: int, retry_after: float | None, endpoint: str, api_key: str | None
) -> BinancePMError:
    """The error of a handshake the exchange answered ``status``."""
    if status == 418:
        return IPBannedError(
            418,
            -1003,
            "the exchange banned this IP (a stream handshake was answered 418)",
            endpoint=endpoint,
            api_key=api_key,
            retry_after=retry_after,
        )
    if status == 429:
        return RateLimitError(
            429,
            -1003,
            "too many stream connection attempts from this IP (HTTP 429)",
            endpoint=endpoint,
            api_key=api_key,
            retry_after=retry_after,
        )
    return TransportError(
        f"the stream was refused (HTTP {status})", endpoint=endpoint, api_key=api_key
    )


async def close(socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
    """Close ``socket`` within :data:`CLOSE_TIMEOUT`, even while being cancelled."""
    with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
        await socket.close()

"""Who may call what on the simulated exchange: API keys, signatures, timestamps and products.

A signed request needs an API key that can be one (``-2014``) and is an account's (``-2015``);
``timestamp`` and the endpoint's mandatory parameters (``-1102``); a ``recvWindow`` of 60000 at
most (``-1131``); a signature of the raw query string by the account's key, HMAC, Ed25519 or
RSA (``-1022``); a timestamp within ``recvWindow`` of the server's clock and less than a second
ahead of it (``-1021``); and an account of a product the endpoint serves (``-2015``). A
listen-key request needs only an account of its product (``-2015``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .._endpoints import ACCOUNT_ENDPOINTS, STREAMS, Endpoint
from ._messages import MSG, Answer
from ._verify import signature_valid

if TYPE_CHECKING:
    from ._book import SimAccount

#: The account types each endpoint answers for, by its name, from the package's endpoint and
#: stream tables (a listen key's are its stream's); the others get -2015.
SERVES: dict[str, frozenset[str]] = {
    **{e.name: frozenset(e.serves) for e in ACCOUNT_ENDPOINTS.values()},
    **{e.name: frozenset(s.serves) for s in STREAMS.values() for e in s.listen_key.values()},
}


def authorize(endpoint: Endpoint[Any], account: SimAccount | None) -> SimAccount:
    """The account of a listen-key request, if it is one the endpoint serves; else -2015."""
    if account is None or account.account_type.value not in SERVES[endpoint.name]:
        raise Answer(401, -2015, MSG[-2015])
    return account


def authenticate(
    endpoint: Endpoint[Any],
    account: SimAccount | None,
    api_key: str | None,
    query: bytes,
    now_ms: int,
) -> tuple[SimAccount, dict[str, str]]:
    """The account and the parameters of a signed request for ``endpoint``, sent with
    ``api_key`` (``account`` is the one it names, if any) at ``now_ms`` on the server's clock;
    or the exchange's error."""
    if not api_key or not api_key.isascii() or len(api_key) > 128:
        raise Answer(401, -2014, MSG[-2014])
    if account is None:
        raise Answer(401, -2015, MSG[-2015])
    payload, sep, signature = query.rpartition(b"&signature=")
    params = dict(parse_qsl(payload.decode("latin-1"), keep_blank_values=True))
    for name in ("timestamp", *endpoint.required):
        if not params.get(name):
            raise Answer(400, -1102, MSG[-1102].format(name=name))
    if not sep or not params.get("timestamp", "").isdigit():
        raise Answer(400, -1102, MSG[-1102].format(name="signature" if not sep else "timestamp"))
    recv_window = int(params.get("recvWindow", "5000") or 5000)
    if recv_window > 60_000:
        raise Answer(400, -1131, MSG[-1131])
    if not signature_valid(account, payload, signature):
        raise Answer(400, -1022, MSG[-1022])
    timestamp = int(params["timestamp"])
    if timestamp >= now_ms + 1000 or now_ms - timestamp > recv_window:
        raise Answer(400, -1021, MSG[-1021])
    if account.account_type.value not in SERVES[endpoint.name]:
        raise Answer(401, -2015, MSG[-2015])
    return account, params

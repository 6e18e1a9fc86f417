"""Typed user data stream events: frozen msgspec Structs with ``Decimal`` amounts.

Amounts come as strings, as in the REST answers, with the same quirks tolerated (``""`` is
``None``, grouped digits are read). The events a risk desk acts on are typed; any other event
(orders, balances, positions) is an :class:`OtherEvent` that keeps its fields as decoded JSON,
so a stream never stops on an event this package does not know.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from ._decoding import ResponseDecoder
from ._exceptions import DecodeError
from ._models import AccountStatus

__all__ = [
    "ListenKeyExpired",
    "OtherEvent",
    "PMProAccountUpdate",
    "RiskLevelChange",
    "StreamEvent",
]


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event: its name (``e``) and the exchange's time in ms (``E``)."""

    event: str = msgspec.field(name="e")
    event_time: int = msgspec.field(name="E", default=0)


class RiskLevelChange(StreamEvent, frozen=True, kw_only=True):
    """``riskLevelChange`` (PM) or ``RISK_LEVEL_CHANGE`` (PM Pro): the account's risk level
    changed; ``level`` is ``MARGIN_CALL``, ``SUPPLY_MARGIN``, ``REDUCE_ONLY``,
    ``FORCE_LIQUIDATION`` … Amounts in USD."""

    uni_mmr: Decimal | None = msgspec.field(name="u", default=None)
    level: AccountStatus = msgspec.field(name="s")
    account_equity: Decimal | None = msgspec.field(name="eq", default=None)
    actual_equity: Decimal | None = msgspec.field(name="ae", default=None)
    maint_margin: Decimal | None = msgspec.field(name="m", default=None)


class PMProAccountUpdate(StreamEvent, frozen=True, kw_only=True):
    """``PM_PRO_ACCOUNT_UPDATE``: a PM Pro account's figures, pushed every 5 seconds; all
    in USD."""

    uni_mmr: Decimal | None = msgspec.field(name="u", default=None)
    account_equity: Decimal | None = msgspec.field(name="eq", default=None)
    actual_equity: Decimal | None = msgspec.field(name="ae", default=None)
    initial_margin: Decimal | None = msgspec.field(name="im", default=None)
    maint_margin: Decimal | None = msgspec.field(name="mm", default=None)
    available_balance: Decimal | None = msgspec.field(name="avb", default=None)
    virtual_max_withdraw: Decimal | None = msgspec.field(name="vmw", default=None)


class ListenKeyExpired(StreamEvent, frozen=True, kw_only=True):
    """``listenKeyExpired``: no more events come on this key (a new one is opened). The key
    itself is not kept: it is a credential for the account's stream."""


class OtherEvent(StreamEvent, frozen=True, kw_only=True):
    """Any other event (``ACCOUNT_UPDATE``, ``balanceUpdate``, ``outboundAccountPosition``,
    ``liabilityChange``, orders …), its fields as decoded JSON in ``data``."""

    data: dict[str, Any] = msgspec.field(default_factory=dict)


class _Name(msgspec.Struct):
    e: str = ""


_NAME = msgspec.json.Decoder(_Name)
#: ``strict=False``: the exchange has sent ``E`` as a string in some events
#: (``listenKeyExpired``'s ``"E": "1693427319838"``).
_TYPED: dict[str, ResponseDecoder[Any]] = {
    name: ResponseDecoder(model, endpoint=f"stream {name}", strict=False)
    for name, model in (
        ("riskLevelChange", RiskLevelChange),
        ("RISK_LEVEL_CHANGE", RiskLevelChange),
        ("PM_PRO_ACCOUNT_UPDATE", PMProAccountUpdate),
    )
}
EXPIRED = "listenKeyExpired"
_ANY = msgspec.json.Decoder(dict[str, Any])
_ANY_VALUE = msgspec.json.Decoder()


#: What decoding a hostile message can raise besides msgspec's own errors: nesting deeper than
#: the interpreter allows, bytes that are not UTF-8, numbers too large to hold.
_FAILURES = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError)


def decode_event(message: bytes | str) -> StreamEvent:
    """One stream message as its event; :class:`DecodeError` for one that is not an event,
    whatever is wrong with it (its depth, size, types or bytes)."""
    try:
        return _decode_event(message.encode() if isinstance(message, str) else message)
    except DecodeError:
        raise
    except _FAILURES as exc:
        raise DecodeError(
            f"a stream message that cannot be decoded ({type(exc).__name__})",
            endpoint="stream",
            path="$",
        ) from None


def _decode_event(body: bytes) -> StreamEvent:
    try:
        name = _NAME.decode(body).e
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise DecodeError(
            "a stream message that is not a JSON event", endpoint="stream", path="$"
        ) from None
    if name == EXPIRED:  # told by its name alone: whatever else it holds, the key is gone
        return ListenKeyExpired(event=name, event_time=_time_of(_ANY_VALUE.decode(body)))
    typed = _TYPED.get(name)
    if typed is not None:
        event: StreamEvent = typed.decode(body)
        return event
    if not name:
        raise DecodeError("a stream message with no event name", endpoint="stream", path="$.e")
    data = _ANY.decode(body)
    return OtherEvent(event=name, event_time=_time_of(data), data=data)


def _time_of(data: Any) -> int:
    """An event's ``E``, an int or a string of digits; 0 when it has none."""
    time = data.get("E") if isinstance(data, dict) else None
    if isinstance(time, bool):
        return 0
    if isinstance(time, int):
        return time
    if isinstance(time, str) and time.isascii() and time.isdigit() and len(time) < 20:
        return int(time)
    return 0

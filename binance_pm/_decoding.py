"""Decoding answers into Structs: fast when the exchange is tidy, forgiving where it is not.

Each endpoint gets one :class:`ResponseDecoder`, built once. Its fast path is a single
``msgspec`` decode straight into the Struct. Only when that fails on an amount (the exchange's
examples show ``""`` and ``"122,559.90199491"`` where numbers stand) does the slow path run: it
decodes to plain objects, mends the amount fields (and only those, found from the Struct's own
field types), and converts. Anything else of the wrong shape becomes a :class:`DecodeError`
naming the endpoint and the field.
"""

from __future__ import annotations

import re
import types
import typing
from decimal import Decimal
from typing import Any, Generic, TypeVar, Union

import msgspec

from ._exceptions import DecodeError

T = TypeVar("T")

_PATH = re.compile(r" - at `(\$[^`]*)`")
_GROUPED = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")

# A plan says where amounts sit in a decoded body: _AMOUNT for an amount, a dict of wire names
# for a Struct, ("list", plan) for an array, ("either", list plan, object plan) for a union.
_AMOUNT = "amount"
Plan = Any


def _plan_for(tp: Any) -> Plan:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if Decimal in args:
            return _AMOUNT
        array = [a for a in args if typing.get_origin(a) in (list, tuple)]
        others = [a for a in args if a not in array]
        if array and others:
            return ("either", _plan_for(array[0]), _plan_for(others[0]))
        return _plan_for(args[0]) if len(args) == 1 else None
    if tp is Decimal:
        return _AMOUNT
    if origin in (list, tuple):
        inner = _plan_for(typing.get_args(tp)[0])
        return ("list", inner) if inner is not None else None
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        plan = {}
        for field in msgspec.structs.fields(tp):
            sub = _plan_for(field.type)
            if sub is not None:
                plan[field.encode_name] = sub
        return plan or None
    return None


def _mend_amount(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value.strip() == "":
        return None
    if _GROUPED.match(value):
        return value.replace(",", "").strip()
    return value


def _mend(obj: object, plan: Plan) -> object:
    if plan is _AMOUNT:
        return _mend_amount(obj)
    if isinstance(plan, dict):
        if isinstance(obj, dict):
            for name, sub in plan.items():
                if name in obj:
                    obj[name] = _mend(obj[name], sub)
        return obj
    kind = plan[0]
    if kind == "list":
        if isinstance(obj, list):
            return [_mend(item, plan[1]) for item in obj]
        return obj
    # "either": an array or an object, decided by what came.
    return _mend(obj, plan[1] if isinstance(obj, list) else plan[2])


def _error_path(exc: Exception) -> str | None:
    match = _PATH.search(str(exc))
    return match.group(1) if match else None


class ResponseDecoder(Generic[T]):
    """Decodes one endpoint's answers into ``T``; build once, reuse for every answer."""

    __slots__ = ("_decoder", "_endpoint", "_plan", "_type")

    def __init__(self, tp: Any, *, endpoint: str) -> None:
        self._type = tp
        self._endpoint = endpoint
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(tp)
        self._plan = _plan_for(tp)

    def decode(self, body: bytes) -> T:
        """Decode ``body``, or raise :class:`DecodeError` naming the endpoint and the field."""
        try:
            return self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            if self._plan is None or "decimal" not in str(exc):
                raise self._error(exc) from None
        except msgspec.DecodeError as exc:
            raise self._error(exc) from None
        if b'""' in body:
            # The usual untidiness, ``""`` for an amount: as null, it decodes on the fast path.
            try:
                return self._decoder.decode(body.replace(b':""', b":null"))
            except msgspec.DecodeError:
                pass  # an empty text where text is due, or other untidiness: mend it all
        return self._decode_leniently(body)

    def _decode_leniently(self, body: bytes) -> T:
        raw = msgspec.json.decode(body)
        mended = _mend(raw, self._plan)
        try:
            result: T = msgspec.convert(mended, self._type)
        except msgspec.ValidationError as exc:
            raise self._error(exc) from None
        return result

    def _error(self, exc: Exception) -> DecodeError:
        message = str(exc)
        snippet = message.split(" - at `")[0]
        return DecodeError(snippet, endpoint=self._endpoint, path=_error_path(exc))

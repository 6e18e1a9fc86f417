"""Decoding answers into Structs: one pass when the exchange is tidy or untidy in the usual ways,
forgiving where it is odder, and never anything but a :class:`DecodeError` when it is wrong.

Each endpoint gets one :class:`ResponseDecoder`, built once. Its path for an answer:

1. One ``msgspec`` decode straight into the Struct: a tidy answer costs nothing more.
2. If that decode stops at an amount (it stops at the first, so that costs little), ``""``
   (the exchange's examples show it) becomes ``null`` and grouped numbers
   (``"122,559.90199491"``, also in the examples) lose their separators, on the bytes, and the
   Struct is decoded once more. An endpoint whose last answer needed that has the next one
   mended the same way before its first decode, so that an exchange that sends ``""`` or
   grouped numbers every time costs one decode each time, not two.
3. Anything still untidy (``""`` where text is due, spaces around the colon) takes a lenient
   pass: plain objects, the amount fields mended (found from the Struct's own field types),
   then converted.

Amounts must be finite decimals that arithmetic can use: ``NaN``, ``sNaN``, ``Infinity`` and
values of 10^``MAX_EXPONENT`` or more (``"1e999999999"``, past the decimal context's range) make
the answer malformed, a :class:`DecodeError` naming the field. Every result gets a quick look
at its amounts (:func:`_all_sane`, a sum in C); only a bad one takes the walk that names the
field. Bodies nested thousands deep, invalid UTF-8 and the like are
:class:`DecodeError` too.
"""

from __future__ import annotations

import operator
import re
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from itertools import chain
from typing import Any, Generic, TypeVar, Union

import msgspec

from ._exceptions import DecodeError

T = TypeVar("T")

#: The largest power of ten an amount may reach: the default decimal context's, past which
#: arithmetic on it raises.
MAX_EXPONENT = 999_999
_ZERO = Decimal(0)
_astuple = msgspec.structs.astuple

_PATH = re.compile(r" - at `(\$[^`]*)`")
_GROUPED = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")
_GROUPED_BYTES = re.compile(rb'"([-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?)"')
_FAILURES = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError)

# A plan says where amounts sit, in a body's plain objects and in the decoded result alike:
# _AMOUNT for an amount; ("struct", ((attribute, wire name, plan), ...)) for a Struct;
# ("list", plan) for an array; ("either", list plan, object plan) for a union of the two.
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
        fields = tuple(
            (field.name, field.encode_name, sub)
            for field in msgspec.structs.fields(tp)
            if (sub := _plan_for(field.type)) is not None
        )
        return ("struct", fields) if fields else None
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
    kind = plan[0]
    if kind == "struct":
        if isinstance(obj, dict):
            for _, wire, sub in plan[1]:
                if wire in obj:
                    obj[wire] = _mend(obj[wire], sub)
        return obj
    if kind == "list":
        if isinstance(obj, list):
            return [_mend(item, plan[1]) for item in obj]
        return obj
    # "either": an array or an object, decided by what came.
    return _mend(obj, plan[1] if isinstance(obj, list) else plan[2])


def _ungroup(match: re.Match[bytes]) -> bytes:
    return b'"' + match.group(1).replace(b",", b"") + b'"'


def _nulls(body: bytes) -> bytes:
    """``body`` with ``""`` amounts as ``null`` (the same object when it has none)."""
    if b'""' not in body:
        return body
    return body.replace(b'":""', b'":null').replace(b'": ""', b'": null')


def _ungrouped(body: bytes) -> bytes:
    """``body`` with thousands separators taken out of quoted numbers."""
    mended = _GROUPED_BYTES.sub(_ungroup, body)
    return body if mended == body else mended


def _error_path(exc: BaseException) -> str | None:
    match = _PATH.search(str(exc))
    return match.group(1) if match else None


def _bad_amount(value: Decimal) -> bool:
    return not value.is_finite() or value.adjusted() > MAX_EXPONENT


def _getters_for(tp: Any, found: dict[type, tuple[Any, tuple[int, ...]]]) -> None:
    """For ``tp`` and every Struct within it: an ``itemgetter`` of its amounts' places in
    ``astuple`` (``None`` if it has none), and the places of its lists of Structs."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType, list, tuple):
        for arg in typing.get_args(tp):
            _getters_for(arg, found)
        return
    if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)) or tp in found:
        return
    fields = msgspec.structs.fields(tp)
    amounts = [i for i, f in enumerate(fields) if _plan_for(f.type) is _AMOUNT]
    nested = tuple(i for i, f in enumerate(fields) if typing.get_origin(f.type) in (list, tuple))
    # itemgetter of one place returns the value itself, of two a tuple: the place twice.
    getter = operator.itemgetter(*amounts, *amounts[:1]) if amounts else None
    found[tp] = (getter, nested)
    for f in fields:
        _getters_for(f.type, found)


def _all_sane(obj: object, getters: dict[type, tuple[Any, tuple[int, ...]]]) -> bool:
    """Whether every amount in a decoded result is finite and within range: the quick look
    every answer gets. Summing them in C, through ``astuple`` and ``itemgetter``, costs about
    40 ns an amount; a NaN or infinity makes the sum one, and a value past the decimal
    context's range makes it raise."""
    cls = obj.__class__
    if cls is list or cls is tuple:
        items: Any = obj
        if not items:
            return True
        plan = getters.get(items[0].__class__)
        if plan is None:
            return True
        rows = list(map(_astuple, items))
        amounts = chain.from_iterable(map(plan[0], rows)) if plan[0] is not None else ()
    else:
        plan = getters.get(cls)
        if plan is None:
            return True
        rows = [_astuple(obj)]  # type: ignore[arg-type]
        amounts = plan[0](rows[0]) if plan[0] is not None else ()
    try:
        if not sum(filter(None, amounts), _ZERO).is_finite():
            return False
    except ArithmeticError:
        return False
    nested = plan[1]
    return not nested or all(_all_sane(row[i], getters) for row in rows for i in nested)


class ResponseDecoder(Generic[T]):
    """Decodes one endpoint's answers into ``T``; build once, reuse for every answer."""

    __slots__ = ("_decoder", "_endpoint", "_getters", "_mends", "_plan", "_strict", "_type")

    def __init__(self, tp: Any, *, endpoint: str, strict: bool = True) -> None:
        """``strict=False`` also takes numbers sent as strings (``"E": "1693427319838"``), as
        some stream events have them."""
        self._type = tp
        self._endpoint = endpoint
        self._strict = strict
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(tp, strict=strict)
        self._plan = _plan_for(tp)
        self._getters: dict[type, tuple[Any, tuple[int, ...]]] = {}
        _getters_for(tp, self._getters)
        # How the last answer had to be mended (``""`` amounts, grouped digits): the next are
        # mended so before their first decode (a look costs far less than a decode that fails
        # and a second one), until one comes that needs none of it.
        self._mends: tuple[Callable[[bytes], bytes], ...] = ()

    def decode(self, body: bytes) -> T:
        """Decode ``body``, or raise :class:`DecodeError` naming the endpoint and the field."""
        if self._mends:
            mended = body
            for mend in self._mends:
                mended = mend(mended)
            if mended is body:
                self._mends = ()  # tidy again
            else:
                try:
                    result = self._decoder.decode(mended)
                except _FAILURES:
                    self._mends = ()  # untidy in another way: from the start
                    return self.decode(body)
                if self._plan is not None and not _all_sane(result, self._getters):
                    self._check_amounts(result, "$", self._plan)
                return result
        try:
            result = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            if self._plan is None:
                raise self._error(exc) from None
            result = self._decode_untidy(body, exc)
        except _FAILURES as exc:
            raise self._error(exc) from None
        if self._plan is not None and not _all_sane(result, self._getters):
            self._check_amounts(result, "$", self._plan)  # names the field
        return result

    def _decode_untidy(self, body: bytes, first: msgspec.ValidationError) -> T:
        """An amount stopped the decode (it stops at the first, so that cost little): ``""``
        as null and grouped numbers ungrouped, on the bytes, then one more decode; failing
        that, the lenient pass."""
        if "decimal" not in str(first):
            raise self._error(first) from None  # wrong in a way no mending touches
        tidy = body
        used: list[Callable[[bytes], bytes]] = []
        for mend in (_nulls, _ungrouped):  # the cheap byte pass first, the regex only if need be
            mended = mend(tidy)
            if mended is tidy:
                continue
            tidy = mended
            used.append(mend)
            try:
                result: T = self._decoder.decode(tidy)
                self._mends = tuple(used)
                return result
            except msgspec.ValidationError as exc:
                if "decimal" not in str(exc):
                    break  # untidy in another way too (an empty text): the lenient pass
            except _FAILURES as exc:
                raise self._error(exc) from None
        try:
            plain = _mend(msgspec.json.decode(body), self._plan)
            result = msgspec.convert(plain, self._type, strict=self._strict)
        except msgspec.ValidationError as exc:
            raise self._error(exc) from None
        except _FAILURES as exc:
            raise self._error(exc) from None
        return result

    def _check_amounts(self, obj: object, path: str, plan: Plan) -> None:
        """Raise :class:`DecodeError` at the first amount that is not a finite, sane decimal."""
        if plan is _AMOUNT:
            if isinstance(obj, Decimal) and _bad_amount(obj):
                raise DecodeError(
                    f"{str(obj)[:24]} is not a finite amount", endpoint=self._endpoint, path=path
                )
            return
        kind = plan[0]
        if kind == "struct":
            for attribute, wire, sub in plan[1]:
                self._check_amounts(getattr(obj, attribute), f"{path}.{wire}", sub)
        elif kind == "list":
            if isinstance(obj, (list, tuple)):
                for i, item in enumerate(obj):
                    self._check_amounts(item, f"{path}[{i}]", plan[1])
        else:
            self._check_amounts(obj, path, plan[1] if isinstance(obj, (list, tuple)) else plan[2])

    def _error(self, exc: BaseException) -> DecodeError:
        if isinstance(exc, RecursionError):
            return DecodeError("nested too deep", endpoint=self._endpoint, path=None)
        if isinstance(exc, UnicodeDecodeError):
            return DecodeError("not valid UTF-8", endpoint=self._endpoint, path=None)
        message = str(exc)
        snippet = message.split(" - at `")[0][:200]
        return DecodeError(snippet, endpoint=self._endpoint, path=_error_path(exc))

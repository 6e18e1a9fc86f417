"""The public surface is exactly what is intended."""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any

import pytest

import binance_pm

PUBLIC = {
    "APIError",
    "AccountResult",
    "Answer",
    "Endpoint",
    "Permit",
    "RateLimitHook",
    "Sender",
    "SharedCount",
    "Sharing",
    "Store",
    "StoreError",
    "AccountStatus",
    "AccountType",
    "AsyncClient",
    "AuthError",
    "BadRequestError",
    "BinancePMError",
    "BucketState",
    "Budget",
    "ClassicPMAccount",
    "DecodeError",
    "Governor",
    "GovernorTimeout",
    "GovernorUnavailable",
    "Limits",
    "IPBannedError",
    "PMAccount",
    "PMBalance",
    "PMProAccount",
    "PMProBalance",
    "PMProSpanAccount",
    "RateLimitError",
    "RiskUnitMM",
    "ServerError",
    "Session",
    "SessionError",
    "TimestampError",
    "TransportError",
    "Update",
    "StreamUpdate",
    "Background",
    "ConnectionBudget",
    "Engine",
    "Attempt",
    "Feed",
    "default_priority",
    "StreamEvent",
    "RiskLevelChange",
    "PMProAccountUpdate",
    "ListenKeyExpired",
    "OtherEvent",
    "__version__",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(binance_pm.__all__) == PUBLIC
    assert len(binance_pm.__all__) == len(PUBLIC)


def test_every_public_name_exists_and_has_a_docstring() -> None:
    for name in binance_pm.__all__:
        value = getattr(binance_pm, name)
        if name != "__version__":
            assert value.__doc__, name


def _types_in(hint: Any, found: set[type]) -> None:
    origin = typing.get_origin(hint)
    if origin is not None:
        if isinstance(origin, type):
            found.add(origin)
        for arg in typing.get_args(hint):
            _types_in(arg, found)
    elif isinstance(hint, type):
        found.add(hint)


#: Classes whose constructor is the package's own business: their instances are handed out.
HANDED_OUT = {
    "Attempt",
    "Background",
    "Feed",
    "ConnectionBudget",
    "Update",
    "StreamUpdate",
    "BucketState",
}


def test_every_public_signature_uses_public_types() -> None:
    """A hook, a store or a sender can be written, and every result named, from the names
    ``binance_pm`` exports: no public method takes or returns a private type."""
    public = {getattr(binance_pm, name) for name in binance_pm.__all__ if name != "__version__"}
    names = {name: getattr(binance_pm, name) for name in binance_pm.__all__}
    private: dict[str, set[str]] = {}
    for owner in [p for p in public if isinstance(p, type) or inspect.isfunction(p)]:
        members: dict[str, Any]
        if not isinstance(owner, type):
            members = {owner.__name__: owner}
        else:
            members = {
                f"{owner.__name__}.{key}": value
                for key, value in vars(owner).items()
                if not key.startswith("_")
                or key in ("__aenter__", "__anext__")
                or (key == "__init__" and owner.__name__ not in HANDED_OUT)
            }
            members[owner.__name__] = owner  # its annotated attributes
        for where, member in members.items():
            if isinstance(member, property):
                member = member.fget
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if not callable(member):
                continue
            if isinstance(member, type):  # its attributes (the public ones), as a user sees them
                hints = typing.get_type_hints(member)
                hints = {key: hint for key, hint in hints.items() if not key.startswith("_")}
            else:
                module = sys.modules[member.__module__]
                hints = typing.get_type_hints(member, globalns={**vars(module), **names})
            found: set[type] = set()
            for hint in hints.values():
                _types_in(hint, found)
            for kind in found:
                if kind.__module__.startswith("binance_pm") and kind not in public:
                    private.setdefault(where, set()).add(f"{kind.__module__}.{kind.__name__}")
    assert private == {}


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("binance_pm").joinpath("py.typed").is_file()


def test_testing_module_surface() -> None:
    import binance_pm.testing

    assert set(binance_pm.testing.__all__) == {
        "ExchangeStats",
        "LoopbackServer",
        "SimAccount",
        "SimulatedExchange",
        "budget_use",
        "most_in_any_window",
    }
    for name in binance_pm.testing.__all__:
        assert getattr(binance_pm.testing, name).__doc__, name


async def test_a_client_is_named_by_its_name_or_else_its_masked_key() -> None:
    import binance_pm

    async with binance_pm.Session() as session:
        named = session.client("k" * 64, secret="s", name="desk-1")
        plain = session.client("k" * 64, secret="s")
        assert named.name == "desk-1"
        assert repr(named).startswith("AsyncClient('desk-1', ")
        assert plain.name == plain.masked_key
        assert "desk-1" not in repr(plain)
        with pytest.raises(TypeError, match="name must be a str"):
            session.client("k" * 64, secret="s", name=12)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="blank"):
            session.client("k" * 64, secret="s", name="  ")
    async with binance_pm.AsyncClient("k" * 64, secret="s", name="solo") as solo:
        assert solo.name == "solo"


def test_public_names_show_public_paths() -> None:
    """``repr``, ``help()`` and the API reference say ``binance_pm.PMBalance``, not the private
    module; the types a class's annotations name still resolve, for users and for msgspec."""
    import msgspec

    import binance_pm.testing

    exported = [(binance_pm, name) for name in binance_pm.__all__]
    exported += [(binance_pm.testing, name) for name in binance_pm.testing.__all__]
    for package, name in exported:
        thing = getattr(package, name)
        if not (isinstance(thing, type) or inspect.isfunction(thing)):
            continue  # __version__, and AccountResult: a union
        assert thing.__module__ == package.__name__, name
        if isinstance(thing, type):
            assert repr(thing) in (f"<class '{package.__name__}.{name}'>", f"<enum '{name}'>")
            typing.get_type_hints(thing)
            wire = thing not in (binance_pm.Update, binance_pm.StreamUpdate)  # hold a client
            if issubclass(thing, msgspec.Struct) and wire:
                msgspec.json.Decoder(list[thing])  # type: ignore[valid-type]

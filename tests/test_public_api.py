"""The public surface is exactly what is intended."""

from __future__ import annotations

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

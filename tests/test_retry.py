"""The one backoff formula: exponential from a base to a ceiling, with equal jitter."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from binance_pm._retry import BASE_DELAY, MAX_DELAY, backoff


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def test_backoff_doubles_per_attempt_with_jitter_between_half_and_whole() -> None:
    lows = [backoff(a, base=BASE_DELAY, ceiling=MAX_DELAY, rand=fixed(0.0)) for a in range(3)]
    highs = [backoff(a, base=BASE_DELAY, ceiling=MAX_DELAY, rand=fixed(0.999999)) for a in range(3)]

    assert lows == [BASE_DELAY / 2, BASE_DELAY, BASE_DELAY * 2]
    assert highs == pytest.approx([BASE_DELAY, BASE_DELAY * 2, BASE_DELAY * 4])


def test_backoff_is_capped_at_its_ceiling() -> None:
    delay = backoff(30, base=BASE_DELAY, ceiling=MAX_DELAY, rand=fixed(0.999999))

    assert delay == pytest.approx(MAX_DELAY)


def test_backoff_of_a_huge_attempt_count_does_not_overflow() -> None:
    assert backoff(10**6, base=BASE_DELAY, ceiling=MAX_DELAY, rand=fixed(0.0)) == MAX_DELAY / 2

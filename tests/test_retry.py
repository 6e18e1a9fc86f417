"""The retry policy: one pure function."""

from __future__ import annotations

import pytest

from binance_pm._retry import BASE_DELAY, MAX_DELAY, OVERLOAD_BASE_DELAY, retry_delay


def fixed(value: float):  # type: ignore[no-untyped-def]
    return lambda: value


@pytest.mark.parametrize("status", [None, 500, 502, 503, 504])
def test_no_answer_and_5xx_are_retried(status: int | None) -> None:
    assert retry_delay(status, None, 0, max_retries=2) is not None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 418, 429])
def test_4xx_is_not_retried(status: int) -> None:
    assert retry_delay(status, -1100, 0, max_retries=2) is None


def test_no_retry_once_max_retries_are_spent() -> None:
    assert retry_delay(None, None, 2, max_retries=2) is None
    assert retry_delay(None, None, 0, max_retries=0) is None


def test_backoff_doubles_per_attempt_with_jitter_between_half_and_whole() -> None:
    lows = [retry_delay(None, None, a, max_retries=9, rand=fixed(0.0)) for a in range(3)]
    highs = [retry_delay(None, None, a, max_retries=9, rand=fixed(0.999999)) for a in range(3)]

    assert lows == [BASE_DELAY / 2, BASE_DELAY, BASE_DELAY * 2]
    assert highs == pytest.approx([BASE_DELAY, BASE_DELAY * 2, BASE_DELAY * 4])


def test_backoff_is_capped() -> None:
    assert retry_delay(None, None, 30, max_retries=99, rand=fixed(0.999999)) == pytest.approx(
        MAX_DELAY
    )


def test_retry_after_longer_than_backoff_wins() -> None:
    assert retry_delay(503, None, 0, max_retries=2, retry_after=7.0, rand=fixed(0.5)) == 7.0


def test_overload_code_backs_off_longer() -> None:
    delay = retry_delay(503, -1008, 0, max_retries=2, rand=fixed(0.0))
    assert delay == OVERLOAD_BASE_DELAY / 2

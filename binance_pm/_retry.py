"""When to try a failed call again, and how long to wait first: one backoff for the whole package.

Every endpoint here is a read, so a call whose answer never came (a transport error) or whose
answer was a 5xx can be repeated without harm. A 4xx means the request itself is wrong, or the
rate limit was hit, which the governor handles; those are never retried here.

:func:`backoff` is the one formula: exponential growth from a base to a ceiling, with "equal
jitter" (half fixed, half random) so that many clients failing together do not come back
together. The retries of a call, a shared store's reconnection and a failing poll job all use it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

BASE_DELAY = 0.2
MAX_DELAY = 5.0
# 503 with -1008: "Request throttled by system-level protection". The exchange is overloaded, so
# back off from a longer first wait.
OVERLOAD_CODE = -1008
OVERLOAD_BASE_DELAY = 1.0


def backoff(
    attempt: int,
    *,
    base: float,
    ceiling: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failure number ``attempt + 1`` (``attempt`` from 0): between half
    and all of ``min(ceiling, base * 2**attempt)``."""
    top = min(ceiling, base * 2.0 ** min(attempt, 64))
    return top / 2 + rand() * top / 2


def retry_delay(
    status: int | None,
    code: int | None,
    attempt: int,
    *,
    max_retries: int,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up.

    Args:
        status: the answer's HTTP status, or ``None`` when no answer came.
        code: the exchange's error code, when the body carried one; ``-1008`` (overload)
            starts the backoff at ``OVERLOAD_BASE_DELAY``.
        attempt: how many retries were already made (0 before the first).
        max_retries: how many retries are allowed in all.
        retry_after: the ``Retry-After`` header in seconds, when the answer had one.
        rand: a source of uniform numbers in [0, 1), for tests.

    The wait is :func:`backoff` from ``BASE_DELAY`` up to ``MAX_DELAY``; a ``Retry-After``
    longer than that wins.
    """
    if attempt >= max_retries:
        return None
    if status is not None and status < 500:
        return None
    base = OVERLOAD_BASE_DELAY if code == OVERLOAD_CODE else BASE_DELAY
    delay = backoff(attempt, base=base, ceiling=MAX_DELAY, rand=rand)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay

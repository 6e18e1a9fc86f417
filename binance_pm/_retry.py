"""When to try a failed call again, and how long to wait first.

Every endpoint here is a read, so a call whose answer never came (a transport error) or whose
answer was a 5xx can be repeated without harm. A 4xx means the request itself is wrong, or the
rate limit was hit, which the governor handles; those are never retried here.
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

    The wait grows exponentially from ``BASE_DELAY`` up to ``MAX_DELAY``, with "equal jitter"
    (half fixed, half random) so that many clients failing together do not retry together. A
    ``Retry-After`` longer than that wins.
    """
    if attempt >= max_retries:
        return None
    if status is not None and status < 500:
        return None
    base = OVERLOAD_BASE_DELAY if code == OVERLOAD_CODE else BASE_DELAY
    ceiling = min(MAX_DELAY, base * (2**attempt))
    delay: float = ceiling / 2 + rand() * ceiling / 2
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay

"""What a call does after each attempt: one pure function for the whole call path, and one
backoff for the whole package.

:func:`decide` maps an attempt's outcome (an answer, or no answer at all) and how far the call
has gone to the next step, as anthropic-sdk-python's ``_should_retry`` does:

==========================================  ================================================
outcome                                     step
==========================================  ================================================
2xx that decodes                            ``RETURN`` the result
2xx that does not decode                    its body's exchange error, classified as below,
                                            else ``RAISE`` the :class:`DecodeError`
``-1021`` on a signed call, the first time  ``RESYNC``: measure the clock, then try again
429 or 418, fewer than                      ``WAIT`` its ``Retry-After`` (the governor holds
``MAX_REFUSED_ATTEMPTS`` so far, and its    the budget shut as long), then acquire again
``Retry-After`` ends before the timeout
5xx, or no answer, with retries left        ``BACKOFF`` (unless the timeout comes first)
anything else                               ``RAISE``
==========================================  ================================================

Every endpoint here is a read, so a call whose answer never came (a transport error) or whose
answer was a 5xx can be repeated without harm. Another 4xx means the request itself is wrong.

:func:`backoff` is the one formula: exponential growth from a base to a ceiling, with "equal
jitter" (half fixed, half random) so that many clients failing together do not come back
together. The retries of a call, a shared store's reconnection and a failing poll job all use it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from ._call import Call, api_error, misfiled
from ._exceptions import (
    APIError,
    BinancePMError,
    DecodeError,
    IPBannedError,
    RateLimitError,
    TimestampError,
    TransportError,
)
from ._http import Answer

BASE_DELAY = 0.2
MAX_DELAY = 5.0
# 503 with -1008: "Request throttled by system-level protection". The exchange is overloaded, so
# back off from a longer first wait.
OVERLOAD_CODE = -1008
OVERLOAD_BASE_DELAY = 1.0
#: A call gives up after this many attempts refused with 429 or 418 (each waited out first).
MAX_REFUSED_ATTEMPTS = 3

Step = Literal["return", "resync", "wait", "backoff", "raise"]
RETURN: Step = "return"
RESYNC: Step = "resync"
WAIT: Step = "wait"
BACKOFF: Step = "backoff"
RAISE: Step = "raise"


class Decision(NamedTuple):
    """The next step of a call: ``RETURN`` its ``value``; ``RESYNC``, ``WAIT`` or ``BACKOFF``
    (``delay`` seconds), then try again; or ``RAISE`` its ``error``. Every step but ``RETURN``
    carries the attempt's error."""

    step: Step
    value: Any = None
    error: BinancePMError | None = None
    delay: float = 0.0


def decide(
    call: Call,
    outcome: Answer | TransportError,
    *,
    max_retries: int,
    clock: Callable[[], float],
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The next step after an attempt of ``call`` (see the table above).

    Args:
        call: the call, and how far it has gone (``retries``, ``refusals``, ``resynced``; its
            timeout ``ends``). Only read.
        outcome: the attempt's answer, or the :class:`TransportError` for no answer.
        max_retries: how many backoffs a call may make in all.
        clock: anyio's clock (``call.ends`` is on it); read only before a backoff.
        rand: uniform numbers in [0, 1), for the backoff's jitter.
    """
    error: BinancePMError
    if isinstance(outcome, TransportError):
        error = outcome
    elif 200 <= outcome.status < 300:
        try:
            return Decision(RETURN, call.endpoint.decode(outcome.body))
        except DecodeError as exc:
            error = misfiled(call, outcome) or exc
    else:
        error = api_error(call, outcome)

    if isinstance(error, TimestampError) and call.endpoint.signed and not call.resynced:
        return Decision(RESYNC, error=error)
    if isinstance(error, (RateLimitError, IPBannedError)):
        if call.refusals + 1 >= MAX_REFUSED_ATTEMPTS:
            return Decision(RAISE, error=error)
        # At least the exchange's Retry-After, whatever the hook does with the refusal (a hook
        # of the caller's may not shut on a 418): an IP asked again while banned is banned
        # longer. Past the timeout, the exchange's refusal says best why the call failed.
        wait = error.retry_after or 0.0
        if wait and clock() + wait >= call.ends:
            return Decision(RAISE, error=error)
        return Decision(WAIT, error=error, delay=wait)
    api = error if isinstance(error, APIError) else None
    retryable = api.status >= 500 if api is not None else isinstance(error, TransportError)
    if not retryable or call.retries >= max_retries:
        return Decision(RAISE, error=error)
    base = OVERLOAD_BASE_DELAY if api is not None and api.code == OVERLOAD_CODE else BASE_DELAY
    delay = backoff(call.retries, base=base, ceiling=MAX_DELAY, rand=rand)
    if api is not None and api.retry_after is not None and api.retry_after > delay:
        delay = api.retry_after  # the exchange said how long: a longer wait than ours wins
    if clock() + delay >= call.ends:
        return Decision(RAISE, error=error)  # no time left to try again after the wait
    return Decision(BACKOFF, error=error, delay=delay)


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

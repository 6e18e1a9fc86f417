"""What an answer teaches a governor, in process or through a shared store: the rules a
:class:`~binance_pm._buckets.Bucket` (which applies them to itself) and a shared store share.

- Which budgets an answer reports on: its request's own, and for a UID-weighted call the
  family's IP budget too (the exchange reports both in the headers of a UID call's answer).
- Which budget a 429 refused, for a call that took two: the one the headers show at its limit.
- Whether UID calls cost IP weight too (:class:`UidCost`): the IP count UID answers report,
  growing with UID calls alone.
- How long a refusal shuts a budget: ``Retry-After``, at least :data:`MIN_SHUT` (a tenth of the
  window if shorter) so that a refusal never becomes a loop, and at most the longest ban the
  exchange documents; one window when the answer does not say.
- What the count an answer reports says of a budget (``Bucket.learn``): outside weight, and the
  bound the count itself puts on what goes out before the next answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ._headers import LONGEST_BAN, retry_after_seconds

if TYPE_CHECKING:
    from ._endpoints import Endpoint

#: The least a 429 or 418 shuts a budget for (or a tenth of the window, if shorter), whatever
#: its ``Retry-After`` says: a refusal never turns into a loop of requests.
MIN_SHUT = 1.0

Kind = Literal["ip", "uid"]

#: How many windows a budget is treated as shared with others after an answer last showed
#: outside weight: its count's room keeps a spare for them, and with no recent count, one
#: request goes to ask for one before the rest.
SHARED_WINDOWS = 10


class Marks(NamedTuple):
    """Three totals of one budget when a request went out: all our weight ever let out, the
    request's own included; all of it finished; all of it gone (expired or given back)."""

    granted: int
    finished: int
    gone: int


def reports_ip_too(endpoint: Endpoint[Any], budgets: int) -> bool:
    """Whether an answer reports the family's IP weight beside the budgets its call took: a UID
    call that took no IP weight."""
    return endpoint.bucket == "uid" and budgets == 1


def refused_kind(reported: Mapping[str, int], uid_limit: int, ip_limit: int) -> Kind:
    """Which budget a 429 for a call that took UID and IP weight refused: IP when the headers
    show the IP count at its limit and the UID count under its own; else UID."""
    if reported.get("uid", 0) < uid_limit and reported.get("ip", 0) >= ip_limit:
        return "ip"
    return "uid"


def shut_seconds(headers: Mapping[str, str] | None, window: float) -> float:
    """How long a 429 or 418 with these headers shuts its budget."""
    retry_after = retry_after_seconds(headers)
    wait = retry_after if retry_after is not None else window
    return min(max(wait, min(MIN_SHUT, window / 10)), LONGEST_BAN)


class UidCost:
    """Whether the exchange charges UID-weighted calls to the IP budget too, learned from the IP
    count their answers report, before any 429.

    Each UID answer that reports the IP count is paired with the one before it (by when they
    went out). The count may rise by what arrived between them: IP weight of ours in flight
    when the first went out, or let out since (a later request may overtake the second on
    its way). A rise beyond that of a weight or more per UID call let out between the two is
    a sign. When the calls themselves cost, nearly every pair shows it; another party's
    spending shows in a pair now and then. So the lesson is :data:`SIGNS` of the last
    :data:`PAIRS` pairs, and UID calls are charged from then on: the most rise per call any
    of those signs showed (each is at most the cost: the IP weight of ours that may have
    arrived between two answers is taken in full), at most the call's UID weight. A window
    that turns between two answers (the count drops), or answers overtaking each other, make
    no sign: they delay the lesson, never teach a false
    one. When the documents are right, no pair shows a sign.
    """

    __slots__ = ("_last", "_most", "_signs")

    def __init__(self) -> None:
        self._last: tuple[int, int, int] | None = None  # UID calls, IP count, IP weight finished
        self._signs = 0  # the last PAIRS pairs, a bit each, newest lowest
        self._most = 0  # the most rise per call among the signs

    def learn(self, used: int, marks: Marks, calls: int, granted: int, cap: int) -> int:
        """The IP count ``used`` reported by the answer of a UID call that went out with the IP
        budget's ``marks``, after ``calls`` UID calls in all; ``granted``: all the IP budget's
        weight let out by now. Returns the IP weight (at most ``cap``) to charge each UID call
        from now on, or 0 while there is no lesson."""
        last = self._last
        if last is not None and calls <= last[0]:
            return 0  # it went out before the last one seen: no pair
        self._last = (calls, used, marks.finished)
        if last is None:
            return 0
        between = calls - last[0]
        ours = granted - last[2]  # let out since the first went out, or on its way then
        per_call = (used - last[1] - ours) // between
        sign = per_call >= 1
        self._signs = ((self._signs << 1) | sign) & ((1 << PAIRS) - 1)
        if sign:
            self._most = max(self._most, per_call)
        if self._signs.bit_count() < SIGNS:
            return 0
        return min(cap, self._most)


#: How many of the last pairs of UID answers must show UID calls raising the IP count.
SIGNS, PAIRS = 6, 8

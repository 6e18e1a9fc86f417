"""The circuit breaker of a shared rate-limit store: whether the store is taken for down, when
it is tried again, and what a call does meanwhile.

A state machine on an injected clock, with no I/O: :class:`~binance_pm._shared.SharedBudgets`
asks it what a call does next, tells it what the store did, and does the waiting, the waking and
the logging. Its states::

              failed               claim, once probe_at has passed
    CLOSED ────────────▶ OPEN ──────────────────────────────────▶ PROBING
      ▲  ▲                │   ◀───────────── release ──────────────  │
      │  └── answered ────┘                                          │
      └──────────────────────────── answered ────────────────────────┘

- ``closed``: the store is taken for up, and every call asks it.
- ``open``: taken for down, after a failure (an error, or no answer in time). No call asks it
  before ``probe_at``; calls count in their process meanwhile (``fall_back``) or wait and fail
  just before their deadline, nothing sent. Failures of calls that were already on their way
  do not count: they would only push ``probe_at`` further.
- ``probing``: one call, the probe, asks it (its own charge); the others wait or fall back. The
  probe's failure counts, and moves ``probe_at`` (:func:`probe_delay`); its release (in a
  ``finally``: answered, failed or cancelled) gives the turn back.

Any answer of the store closes the breaker.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ._hook import StoreError

#: A call that waits for the store gives up this long before its deadline, so that its
#: GovernorUnavailable, and not the deadline's own error (which blames the budget), ends it.
SHORT = 0.05
#: After a failure the store is tried again in ``PROBE_FIRST`` s, doubled with each failure in
#: a row up to ``PROBE_DOUBLED_TO``; or in ``PROBE_SHARE`` times what the failure cost, if that
#: is longer (a timeout), so that probes cost a small share of the calls' time; never later
#: than ``PROBE_LAST``.
PROBE_FIRST, PROBE_DOUBLED_TO, PROBE_SHARE, PROBE_LAST = 0.1, 3.0, 4.0, 30.0
#: A round trip cut short by a call's deadline counts as a failure only if it had this long.
FAIR_TRY = 0.1


def probe_delay(failures: int, cost: float) -> float:
    """Seconds from failure number ``failures`` in a row (from 1), which took ``cost`` seconds,
    to the next probe."""
    doubled = min(PROBE_FIRST * 2.0 ** min(failures - 1, 16), PROBE_DOUBLED_TO)
    return min(PROBE_LAST, max(doubled, PROBE_SHARE * cost))


class Step(enum.Enum):
    """What a call does next about the store."""

    ASK = "ask"  # the store is taken for up: ask it
    PROBE = "probe"  # ask it as the probe (after :meth:`Breaker.claim`)
    WAIT = "wait"  # until the time given, or until the breaker changes
    FALL_BACK = "fall back"  # count in this process instead
    FAIL = "fail"  # GovernorUnavailable: nothing is sent


class Probe:
    """One call's turn to try a store taken for down."""

    __slots__ = ()


class Breaker:
    """Whether a store is taken for down, and when it is tried again.

    Args:
        clock: the monotonic clock deadlines are on (``anyio.current_time`` in a governor).
        fall_back: whether calls count in their process while the store is down
            (``on_store_error="local"``), or wait for it and fail closed.
    """

    __slots__ = ("_clock", "_prober", "error", "failures", "fall_back", "probe_at")

    def __init__(self, clock: Callable[[], float], *, fall_back: bool) -> None:
        self._clock = clock
        self.fall_back = fall_back
        self.error: StoreError | None = None  # the failure that opened it; None: closed
        self.failures = 0  # failures that counted, in a row
        self.probe_at = 0.0  # when a call may try the store again
        self._prober: Probe | None = None

    @property
    def down(self) -> bool:
        """Whether the store is taken for down (the breaker is open, or probing)."""
        return self.error is not None

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"probing"``."""
        if self.error is None:
            return "closed"
        return "open" if self._prober is None else "probing"

    def step(self, until: float) -> tuple[Step, float]:
        """What a call that must be done by ``until`` does now, and, for :attr:`Step.WAIT`,
        until when it waits (it may be woken sooner: see :meth:`release`, :meth:`answered`)."""
        if self.error is None:
            return Step.ASK, 0.0
        now = self._clock()
        if self._prober is None and now >= self.probe_at:
            return Step.PROBE, 0.0
        if self.fall_back:
            return Step.FALL_BACK, 0.0
        if now >= until:
            return Step.FAIL, 0.0
        return Step.WAIT, until if self._prober is not None else min(until, self.probe_at)

    def give_up(self) -> Step:
        """What a call that can wait for the store no longer does."""
        return Step.FALL_BACK if self.fall_back else Step.FAIL

    def allowed(self, deadline: float) -> float:
        """Seconds one round trip may take for a call due at ``deadline``: it must end in time
        for the call to fall back and still go, or to fail before its deadline does."""
        left = deadline - self._clock()
        return max(left / 2 if self.fall_back else left - SHORT, 0.0)

    def claim(self) -> Probe:
        """Take the probe's turn, which :meth:`step` gave (``open`` → ``probing``)."""
        if self.error is None or self._prober is not None or self._clock() < self.probe_at:
            raise RuntimeError(f"no probe is due: {self!r}")
        self._prober = Probe()
        return self._prober

    def release(self, probe: Probe) -> bool:
        """The probe is done (``probing`` → ``open``, unless it closed the breaker). True
        when the breaker changed: those who wait should look again."""
        if self._prober is not probe:
            return False
        self._prober = None
        return True

    def failed(self, error: StoreError, *, cost: float, probe: Probe | None = None) -> bool:
        """The store failed, after ``cost`` seconds: open the breaker, or keep it open, and
        set when to try it again. Only the failure that opens it and the probe's count, not
        the calls that were on their way. True when this opened it."""
        opening = self.error is None
        if not opening and (probe is None or probe is not self._prober):
            return False
        self.error = error
        self.failures += 1
        self.probe_at = self._clock() + probe_delay(self.failures, cost)
        return opening

    def answered(self) -> bool:
        """The store answered: close the breaker. True when it was open (those who wait
        should look again)."""
        self.failures = 0
        if self.error is None:
            return False
        self.error = None
        self._prober = None
        return True

    def __repr__(self) -> str:
        due = f", probe in {self.probe_at - self._clock():.3g} s" if self.error else ""
        return f"Breaker({self.state}, failures={self.failures}{due})"

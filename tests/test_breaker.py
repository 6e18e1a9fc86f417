"""The shared store's circuit breaker: a state machine on a hand-moved clock, tested as tables
(what a call does in each state, and where each event takes each state)."""

from __future__ import annotations

import pytest

from binance_pm._breaker import (
    PROBE_DOUBLED_TO,
    PROBE_FIRST,
    PROBE_LAST,
    SHORT,
    Breaker,
    Probe,
    Step,
    probe_delay,
)
from binance_pm._hook import StoreError

from .hand_clock import HandClock

T0 = 100.0  # when the breaker opens, in the states below
ERROR = StoreError("ConnectionError: refused")


def in_state(
    state: str, clock: HandClock, *, fall_back: bool = False
) -> tuple[Breaker, Probe | None]:
    """A breaker in ``state``: "closed"; "open" (failed once at T0, its probe at T0 + 0.1);
    "open, due" (the same, at its probe time); "probing" (a call claimed that probe)."""
    clock.now = T0
    breaker = Breaker(clock, fall_back=fall_back)
    probe = None
    if state != "closed":
        breaker.failed(ERROR, cost=0.0)
    if state in ("open, due", "probing"):
        clock.now = breaker.probe_at
    if state == "probing":
        probe = breaker.claim()
    return breaker, probe


# -- what a call does: step(until) --------------------------------------------------------

DUE = T0 + PROBE_FIRST
STEPS = [
    # state, fall back, now, until -> step, waits until
    ("closed", False, T0, T0 + 5, Step.ASK, 0.0),
    ("closed", True, T0, T0 + 5, Step.ASK, 0.0),
    ("open", False, T0 + 0.05, T0 + 5, Step.WAIT, DUE),  # for the probe's time
    ("open", False, T0 + 0.05, T0 + 0.08, Step.WAIT, T0 + 0.08),  # for its own end, sooner
    ("open", False, T0 + 0.05, T0 + 0.05, Step.FAIL, 0.0),  # its time is up
    ("open", True, T0 + 0.05, T0 + 5, Step.FALL_BACK, 0.0),
    ("open", False, DUE, T0 + 5, Step.PROBE, 0.0),
    ("open", True, DUE, T0 + 5, Step.PROBE, 0.0),  # even a call that could count alone
    ("probing", False, DUE + 1, T0 + 5, Step.WAIT, T0 + 5),  # one probe at a time
    ("probing", False, T0 + 5, T0 + 5, Step.FAIL, 0.0),
    ("probing", True, DUE + 1, T0 + 5, Step.FALL_BACK, 0.0),
]


@pytest.mark.parametrize(("state", "fall_back", "now", "until", "step", "wake"), STEPS)
def test_what_a_call_does_in_each_state(
    state: str, fall_back: bool, now: float, until: float, step: Step, wake: float
) -> None:
    clock = HandClock()
    breaker, _ = in_state(state, clock, fall_back=fall_back)
    clock.now = now

    taken, until_woken = breaker.step(until)

    assert taken is step
    assert until_woken == pytest.approx(wake)


@pytest.mark.parametrize(("fall_back", "step"), [(True, Step.FALL_BACK), (False, Step.FAIL)])
def test_a_call_that_can_wait_no_longer_falls_back_or_fails_closed(
    fall_back: bool, step: Step
) -> None:
    breaker, _ = in_state("open", HandClock(), fall_back=fall_back)

    assert breaker.give_up() is step


@pytest.mark.parametrize(
    ("fall_back", "left", "allowed"),
    [(True, 2.0, 1.0), (False, 2.0, 2.0 - SHORT), (False, 0.01, 0.0), (True, -1.0, 0.0)],
)
def test_a_round_trip_leaves_time_to_fall_back_or_to_fail_before_the_deadline(
    fall_back: bool, left: float, allowed: float
) -> None:
    clock = HandClock()
    breaker = Breaker(clock, fall_back=fall_back)

    assert breaker.allowed(clock.now + left) == pytest.approx(allowed)


# -- where each event takes each state ------------------------------------------------------

TRANSITIONS = [
    # from, event -> to, returns, failures in a row, probe_at (None: no breaker time set)
    ("closed", "failed", "open", True, 1, T0 + PROBE_FIRST),
    ("closed", "answered", "closed", False, 0, None),
    ("open", "failed", "open", False, 1, T0 + PROBE_FIRST),  # a call on its way: not counted
    ("open", "answered", "closed", True, 0, T0 + PROBE_FIRST),
    ("open, due", "claimed", "probing", True, 1, T0 + PROBE_FIRST),
    ("probing", "probe failed", "probing", False, 2, DUE + 2 * PROBE_FIRST),
    ("probing", "failed", "probing", False, 1, DUE),  # not the probe: not counted
    ("probing", "probe released", "open", True, 1, DUE),  # its turn given back
    ("probing", "stale probe released", "probing", False, 1, DUE),
    ("probing", "answered", "closed", True, 0, DUE),
]


def act(breaker: Breaker, probe: Probe | None, event: str) -> bool:
    if event == "failed":
        return breaker.failed(ERROR, cost=0.0)
    if event == "probe failed":
        return breaker.failed(ERROR, cost=0.0, probe=probe)
    if event == "answered":
        return breaker.answered()
    if event == "claimed":
        return isinstance(breaker.claim(), Probe)
    if event == "probe released":
        assert probe is not None
        return breaker.release(probe)
    if event == "stale probe released":
        return breaker.release(Probe())
    raise AssertionError(event)


@pytest.mark.parametrize(("start", "event", "end", "returns", "failures", "probe_at"), TRANSITIONS)
def test_each_event_moves_the_breaker_as_the_table_says(
    start: str, event: str, end: str, returns: bool, failures: int, probe_at: float | None
) -> None:
    clock = HandClock()
    breaker, probe = in_state(start, clock)

    assert act(breaker, probe, event) is returns

    assert breaker.state == end
    assert breaker.down is (end != "closed")
    assert breaker.failures == failures
    if probe_at is not None:
        assert breaker.probe_at == pytest.approx(probe_at)


@pytest.mark.parametrize("state", ["closed", "open", "probing"])
def test_no_probe_can_be_claimed_before_it_is_due_or_twice(state: str) -> None:
    breaker, _ = in_state(state, HandClock())

    with pytest.raises(RuntimeError, match="no probe is due"):
        breaker.claim()


def test_the_error_that_opened_the_breaker_is_kept_until_it_closes() -> None:
    breaker, _ = in_state("open", HandClock())
    assert breaker.error is ERROR

    breaker.answered()

    assert breaker.error is None


# -- when the store is tried again ----------------------------------------------------------

DELAYS = [
    # failures in a row, what the failure cost -> seconds to the next probe
    (1, 0.0, PROBE_FIRST),
    (2, 0.0, 2 * PROBE_FIRST),
    (3, 0.0, 4 * PROBE_FIRST),
    (6, 0.0, PROBE_DOUBLED_TO),  # 3.2 doubled, capped
    (1_000, 0.0, PROBE_DOUBLED_TO),
    (1, 0.5, 2.0),  # a timeout: four times its cost
    (5, 0.5, 2.0),  # longer than 1.6 doubled
    (1, 60.0, PROBE_LAST),
]


@pytest.mark.parametrize(("failures", "cost", "delay"), DELAYS)
def test_probes_come_at_a_rate_that_falls_with_failures_and_their_cost(
    failures: int, cost: float, delay: float
) -> None:
    assert probe_delay(failures, cost) == pytest.approx(delay)


def test_a_store_down_for_good_is_probed_ever_less_often_by_one_call_at_a_time() -> None:
    clock = HandClock()
    breaker, _ = in_state("open", clock)
    gaps = []
    for _ in range(7):
        step, _ = breaker.step(clock.now + 60)
        while step is not Step.PROBE:
            clock.now = breaker.probe_at
            step, _ = breaker.step(clock.now + 60)
        tried = clock.now
        probe = breaker.claim()
        assert breaker.step(clock.now + 60)[0] is Step.WAIT  # the others wait meanwhile
        breaker.failed(ERROR, cost=0.0, probe=probe)
        breaker.release(probe)
        gaps.append(round(breaker.probe_at - tried, 6))

    assert gaps == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]


def test_an_answer_starts_the_next_opening_from_the_first_delay() -> None:
    clock = HandClock()
    breaker, probe = in_state("probing", clock)
    assert probe is not None
    breaker.failed(ERROR, cost=0.0, probe=probe)
    breaker.answered()

    assert breaker.failed(ERROR, cost=0.0) is True

    assert breaker.probe_at == pytest.approx(clock.now + PROBE_FIRST)


def test_a_probe_cancelled_before_any_answer_lets_the_next_call_probe_at_once() -> None:
    clock = HandClock()
    breaker, probe = in_state("probing", clock)
    assert probe is not None

    breaker.release(probe)  # its caller's finally: cancelled mid round trip

    assert breaker.step(clock.now + 5) == (Step.PROBE, 0.0)


def test_the_repr_shows_the_state_and_the_probe_time() -> None:
    clock = HandClock()
    breaker, _ = in_state("open", clock)

    assert repr(breaker) == "Breaker(open, failures=1, probe in 0.1 s)"

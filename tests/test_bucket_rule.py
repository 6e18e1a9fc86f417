"""A bucket's one rule over random histories (hypothesis): ``Bucket.can_take`` runs the two
common cases of ``Bucket.needed`` inline, for speed; whatever the bucket has seen (requests let
out, answered or lost, given back, counts reported with others spending, refusals, time), it
must decide as the rule itself does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from binance_pm._buckets import Bucket
from binance_pm._learning import Marks
from binance_pm._limits import Budget

LIMIT, WINDOW = 40, 1.0
WEIGHTS = (1, 5, 20, 39, 40)

take = st.tuples(st.just("take"), st.sampled_from(WEIGHTS[:4]))
finish = st.tuples(
    st.just("finish"),
    st.integers(0, 10),  # which request still out
    st.booleans(),  # an answer came (else: no answer, the request failed)
    st.one_of(st.none(), st.integers(0, 60)),  # the count the answer reported, if any
)
give_back = st.tuples(st.just("give_back"), st.integers(0, 10))
shut = st.tuples(st.just("shut"), st.floats(0.1, 2.0, allow_nan=False))
wait = st.tuples(st.just("wait"), st.floats(0.0, 3.0 * WINDOW, allow_nan=False))
operation = st.one_of(take, take, finish, finish, give_back, shut, wait, wait)


def by_the_rule(bucket: Bucket, weight: int, now: float) -> bool:
    """``can_take`` as the rule itself says it: an answer first if anything is in flight, and
    the room ``needed`` says on top of everything counted."""
    if bucket.inflight and not bucket.answered:
        return False
    room = bucket.needed(weight, now)
    return room is not None and bucket.used(now) + room <= bucket.limit


@settings(max_examples=400, deadline=None)
@given(history=st.lists(operation, min_size=1, max_size=80))
def test_can_take_decides_as_the_rule_does(history: list[tuple[Any, ...]]) -> None:
    bucket = Bucket(Budget("papi", "ip"), LIMIT, WINDOW)
    now = 0.0
    out: list[tuple[int, tuple[int, ...]]] = []
    for step in history:
        kind = step[0]
        if kind == "take":
            out.append((step[1], bucket.take(step[1])))
        elif kind == "finish" and out:
            weight, marks = out.pop(step[1] % len(out))
            answered, used = step[2], step[3]
            bucket.finish(weight, now, answered)
            if answered and used is not None:
                bucket.learn(used, weight, Marks(*marks[:3]), now)
        elif kind == "give_back" and out:
            bucket.give_back(out.pop(step[1] % len(out))[0])
        elif kind == "shut":
            bucket.shut(now, step[1])
        elif kind == "wait":
            now += step[1]
        for weight in WEIGHTS:
            assert bucket.can_take(weight, now) == by_the_rule(bucket, weight, now), (weight, now)


def test_another_partys_weight_is_not_lost_when_the_first_to_arrive_is_answered_last() -> None:
    """Another party holds 300 of a budget of 1,000. A burst of ours (weight 5) goes out; the
    exchange counts them in the order they went, but their answers come back in the reverse
    order, so the last answer seen is of the first to arrive, counted with almost none of
    ours. Each answer's estimate errs low: the highest of the burst's is the one that holds,
    and a request of weight 20 then fits only as the other party's 300 allows."""
    window, other = 60.0, 300
    bucket = Bucket(Budget("papi", "ip"), 1000, window)
    first = Marks(*bucket.take(5))  # the first answer of the budget: the count is learnt
    bucket.finish(5, 0.1, True)
    bucket.learn(other + 5, 5, first, 0.1)
    burst = []
    while bucket.can_take(5, 1.0):
        burst.append(Marks(*bucket.take(5)))
    counted = [other + 5 + 5 * (i + 1) for i in range(len(burst))]  # on arrival, in order
    for marks, used in reversed(list(zip(burst, counted, strict=True))):
        bucket.finish(5, 1.05, True)
        bucket.learn(used, 5, marks, 1.05)
    assert bucket.external == other
    assert other + 5 + 5 * len(burst) + 20 > 1000  # the exchange's count has no room for 20
    assert not bucket.can_take(20, 1.05)

"""The governor, run for real under trio's MockClock: virtual time that jumps whenever every task
waits, so timers, events and cancellation are exercised exactly, with no sleeping."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from binance_pm import Governor, GovernorTimeout, IPBannedError, Limits, RateLimitError
from binance_pm._endpoints import (
    CLASSIC_PM_ACCOUNT,
    PM_BALANCE,
    PM_PRO_ACCOUNT,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
)
from binance_pm._headers import LONGEST_BAN

FAR = 1e9  # a deadline that never comes


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def governor(**kwargs: Any) -> Governor:
    """A governor on trio's clock; limits given by name (``papi_ip=100``)."""
    kwargs.setdefault("window", 1.0)
    limits = Limits(**{k: kwargs.pop(k) for k in list(kwargs) if k in Limits.__slots__})
    return Governor(clock=trio.current_time, limits=limits, **kwargs)


async def warm(gov: Governor, endpoint: Any) -> None:
    """One answered call, and a window for its weight to leave: a budget that has had an
    answer no longer sends its first request alone."""
    (await gov.acquire(endpoint, account="w", deadline=FAR)).complete(200, {})
    await trio.sleep(gov.window)


def test_burst_after_idle_goes_out_at_once() -> None:
    async def main() -> list[float]:
        gov = governor(papi_ip=100)
        times = []
        for _ in range(5):
            permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
            times.append(trio.current_time())
            permit.complete(200, {})
        return times

    assert len(set(run(main))) == 1


def test_weight_is_held_until_one_window_after_the_answer() -> None:
    async def main() -> float:
        gov = governor(papi_ip=40)
        (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(200, {})
        await trio.sleep(1.0)  # that first answer's weight has left the window
        first = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        await gov.acquire(PM_BALANCE, account="a", deadline=FAR)  # still in flight, forever
        await trio.sleep(0.3)
        first.complete(200, {})  # answered at 1.3: held until 2.3
        await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        return trio.current_time()

    assert run(main) == pytest.approx(2.3)


def test_a_fresh_budget_sends_one_request_and_learns_before_bursting() -> None:
    async def main() -> list[float]:
        gov = governor(papi_ip=100)
        times: list[float] = []

        async def call() -> None:
            permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
            sent = trio.current_time()
            times.append(sent)
            await trio.sleep(0.05)
            # A sliding count: ours of the last window, and 40 another process has spent.
            ours = sum(20 for t in times if sent - 1.0 < t <= sent)
            permit.complete(200, {"X-MBX-USED-WEIGHT-1M": str(ours + 40)})

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(call)
        return times

    times = run(main)
    assert times[0] == 0
    assert times[1] == pytest.approx(0.05)  # after the first answer, as far as the room goes,
    # keeping a request's weight to spare while another process spends too: the third waits
    # for the first's weight to leave (1.05), and the fourth for the third's count (1.10).
    assert times[2:] == [pytest.approx(1.05), pytest.approx(1.10)]


def test_after_a_429_a_lower_estimate_does_not_replace_a_higher_one_for_a_window() -> None:
    async def main() -> list[int]:
        gov = governor(papi_ip=1000)
        seen = []
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(429, {"Retry-After": "0.1", "X-MBX-USED-WEIGHT-1M": "620"})
        seen.append(gov.snapshot()["papi_ip"].external)  # 600 of it is not ours
        await trio.sleep(0.2)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(200, {"X-MBX-USED-WEIGHT-1M": "500"})  # an overtaken, low reading
        seen.append(gov.snapshot()["papi_ip"].external)
        await trio.sleep(1.0)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(200, {"X-MBX-USED-WEIGHT-1M": "520"})
        seen.append(gov.snapshot()["papi_ip"].external)  # a window on: the latest counts
        return seen

    assert run(main) == [600, 600, 500]


KEY_A = "aaaa" + "x" * 56 + "1111"
KEY_B = "bbbb" + "x" * 56 + "2222"


def test_uid_budgets_are_per_account_and_ip_budgets_shared() -> None:
    async def main() -> dict[str, Any]:
        gov = governor(sapi_uid=10, fapi_ip=10)
        await warm(gov, CLASSIC_PM_ACCOUNT)
        for account in (KEY_A, KEY_B):
            for _ in range(2):
                (await gov.acquire(PM_PRO_ACCOUNT, account=account, deadline=FAR)).complete(200, {})
        await gov.acquire(CLASSIC_PM_ACCOUNT, account=KEY_A, deadline=FAR)
        await gov.acquire(CLASSIC_PM_ACCOUNT, account=KEY_B, deadline=FAR)
        return {"at": trio.current_time(), "snapshot": gov.snapshot()}

    result = run(main)
    assert result["at"] == 1.0  # after warming: two accounts' UID budgets did not wait
    snapshot = result["snapshot"]
    assert snapshot["fapi_ip"].used == 10  # one IP budget for both
    assert snapshot["sapi_uid:aaaa…1111"].used == 10
    assert snapshot["sapi_uid:bbbb…2222"].used == 10


def test_uid_buckets_of_keys_that_mask_alike_keep_apart_in_the_snapshot() -> None:
    async def main() -> list[str]:
        gov = governor()
        for account in ("short1", "short2"):
            await gov.acquire(PM_PRO_ACCOUNT, account=account, deadline=FAR)
        return sorted(k for k in gov.snapshot() if k.startswith("sapi_uid"))

    assert run(main) == ["sapi_uid:****", "sapi_uid:****#2"]


def test_heavy_call_is_not_starved_by_a_stream_of_light_ones() -> None:
    async def main() -> list[str]:
        gov = governor(sapi_ip=40)
        order: list[str] = []

        async def call(endpoint: Any, name: str, delay: float) -> None:
            await trio.sleep(delay)
            permit = await gov.acquire(endpoint, account="a", deadline=FAR)
            order.append(name)
            permit.complete(200, {})

        async with trio.open_nursery() as nursery:
            for i in range(8):  # weight 5, one every 0.1 s
                nursery.start_soon(call, PM_PRO_SPAN_ACCOUNT, f"light{i}", 0.1 * i)
            nursery.start_soon(call, PM_PRO_BALANCE, "heavy", 0.05)  # weight 20
            for i in range(8, 20):
                nursery.start_soon(call, PM_PRO_SPAN_ACCOUNT, f"light{i}", 0.1 * i)
        return order

    order = run(main)
    assert order.index("heavy") < order.index("light1")  # first come, first served


def test_call_needing_ip_and_uid_takes_both_at_once() -> None:
    async def main() -> dict[str, Any]:
        gov = governor(sapi_uid=10, sapi_ip=10, sapi_uid_ip_weight=5)
        await warm(gov, PM_PRO_SPAN_ACCOUNT)
        held_ip = await gov.acquire(PM_PRO_SPAN_ACCOUNT, account="x", deadline=FAR)  # IP 5
        held_ip2 = await gov.acquire(PM_PRO_SPAN_ACCOUNT, account="x", deadline=FAR)  # IP 10
        states: dict[str, Any] = {}

        async def uid_call() -> None:
            permit = await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=FAR)
            states["granted_at"] = trio.current_time()
            permit.complete(200, {})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(uid_call)
            await trio.sleep(0.5)
            # Waiting for IP weight, it holds no UID weight meanwhile.
            states["uid_used_while_waiting"] = gov.snapshot()["sapi_uid:****"].used
            held_ip.cancel()
            held_ip2.complete(200, {})
        return states

    states = run(main)
    assert states["uid_used_while_waiting"] == 0
    assert states["granted_at"] == pytest.approx(1.5)  # warmed for 1.0, then waited 0.5


def test_try_acquire_grants_only_what_acquire_would_grant_at_once() -> None:
    async def main() -> dict[str, Any]:
        gov = governor(papi_ip=40, sapi_uid=10, sapi_ip=10, sapi_uid_ip_weight=5)
        seen: dict[str, Any] = {}
        first = gov.try_acquire(PM_BALANCE, account="a")
        assert first is not None
        # A fresh budget sends one request and waits for its answer.
        seen["cold"] = gov.try_acquire(PM_BALANCE, account="a")
        first.complete(200, {})
        second = gov.try_acquire(PM_BALANCE, account="a")
        seen["full"] = gov.try_acquire(PM_BALANCE, account="a")  # 40 of 40 held

        async def waiter() -> None:
            (await gov.acquire(PM_BALANCE, account="b", deadline=FAR)).complete(200, {})
            seen["waiter_at"] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.5)
            assert second is not None
            second.cancel()  # room for one, and the waiter, not yet run, came first
            seen["behind_waiter"] = gov.try_acquire(PM_BALANCE, account="c")
        # Both buckets of a UID call that costs IP weight, or neither.
        uid = gov.try_acquire(PM_PRO_ACCOUNT, account="u")
        assert uid is not None
        uid.complete(200, {})
        seen["uid_used"] = gov.snapshot()["sapi_uid:****"].used
        seen["sapi_ip_used"] = gov.snapshot()["sapi_ip"].used
        uid2 = gov.try_acquire(PM_PRO_ACCOUNT, account="u")
        assert uid2 is not None
        seen["uid_full"] = gov.try_acquire(PM_PRO_ACCOUNT, account="u")
        seen["sapi_ip_after_refusal"] = gov.snapshot()["sapi_ip"].used
        # A 429 anywhere sends every call through the waiting path until it reopens.
        uid2.complete(429, {"Retry-After": "3"})
        seen["after_429"] = gov.try_acquire(PM_BALANCE, account="a")
        return seen

    seen = run(main)
    assert seen["cold"] is None
    assert seen["full"] is None
    assert seen["waiter_at"] == pytest.approx(0.5)
    assert seen["behind_waiter"] is None
    assert (seen["uid_used"], seen["sapi_ip_used"]) == (5, 5)
    assert seen["uid_full"] is None
    assert seen["sapi_ip_after_refusal"] == 10  # the refused call took no IP weight either
    assert seen["after_429"] is None


def test_cancelled_waiter_takes_nothing_and_the_next_one_goes() -> None:
    async def main() -> dict[str, Any]:
        gov = governor(papi_ip=20)
        first = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        result: dict[str, Any] = {}

        async def patient() -> None:
            await trio.sleep(0.01)  # queued behind the impatient one
            permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
            result["patient_at"] = trio.current_time()
            permit.complete(200, {})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(patient)
            with trio.move_on_after(0.2):
                await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
                result["impatient"] = "granted"
            result["waiters_after_cancel"] = gov.snapshot()["papi_ip"].waiters
            first.cancel()  # never left: its weight comes back at once
        result["used_at_end"] = gov.snapshot()["papi_ip"].used
        return result

    result = run(main)
    assert "impatient" not in result
    assert result["waiters_after_cancel"] == 1
    assert result["patient_at"] == pytest.approx(0.2)
    assert result["used_at_end"] == 20  # the patient call's own weight, held a window


def test_deadline_that_cannot_be_met_raises_at_once() -> None:
    async def main() -> tuple[float, GovernorTimeout]:
        gov = governor(papi_ip=20)
        (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(200, {})
        with pytest.raises(GovernorTimeout) as caught:
            await gov.acquire(PM_BALANCE, account="a", deadline=trio.current_time() + 0.5)
        return trio.current_time(), caught.value

    at, error = run(main)
    assert at == 0  # no waiting in vain: room comes at 1.0, after the deadline
    assert error.retry_after == pytest.approx(1.0)


def test_headers_reporting_more_weight_make_the_next_calls_wait() -> None:
    async def main() -> float:
        gov = governor(papi_ip=100)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        # Another process on this IP has spent 60: the exchange counts 80.
        permit.complete(200, {"X-MBX-USED-WEIGHT-1M": "80"})
        second = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)  # 20 + 60 + 20: fits
        second.complete(200, {})
        await gov.acquire(PM_BALANCE, account="a", deadline=FAR)  # must wait
        return trio.current_time()

    assert run(main) == pytest.approx(1.0)  # the reported weight lapses a window later


def test_after_a_quiet_window_with_others_spending_one_request_asks_before_the_rest() -> None:
    """Counts lapse in a window without answers; others spent lately, so the first request
    goes alone and the rest wait for its answer, not for a burst into the others' weight."""

    async def main() -> list[float]:
        gov = governor(papi_ip=1000)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(200, {"X-MBX-USED-WEIGHT-1M": "500"})  # 480 of it not ours
        await trio.sleep(2.5)  # a quiet window: nothing held, nothing confirmed
        asking = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        went: list[float] = []

        async def follower() -> None:
            await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
            went.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(follower)
            await trio.sleep(0.3)
            assert went == []  # waiting for the answer, not bursting
            asking.complete(200, {"X-MBX-USED-WEIGHT-1M": "520"})
        return went

    went = run(main)
    assert went == [pytest.approx(2.8)] * 3


@pytest.mark.parametrize("gone_during_flight", [False, True])
def test_outside_weight_counts_ours_as_the_exchange_saw_it(gone_during_flight: bool) -> None:
    external = 40

    async def main() -> int:
        gov = governor(papi_ip=1000)
        await warm(gov, PM_BALANCE)
        for _ in range(3):  # 60 of ours held, expiring at 2.0, 2.1 and 2.2
            (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(200, {})
            await trio.sleep(0.1)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)  # at 1.3
        # The exchange counts ours still held when it arrived, and the outside weight.
        reported = 80 + external
        if gone_during_flight:
            await trio.sleep(1.0)  # the three expire while it is on its way; arriving
            reported = 20 + external  # after that, it is counted without them
        permit.complete(200, {"X-MBX-USED-WEIGHT-1M": str(reported)})
        return gov.snapshot()["papi_ip"].external

    assert run(main) == external


def test_answers_overtaken_in_a_burst_show_no_outside_weight() -> None:
    """A burst of ten goes out at once; the first one's answer comes last, counting all ten
    (the later ones overtook it on the way). None of it is another's: the budget's room stays
    whole, and the next burst goes when the first one's weight expires, not a window later."""

    async def main() -> tuple[int, int, float]:
        gov = governor(papi_ip=200)
        await warm(gov, PM_BALANCE)
        await trio.sleep(1.0)  # the warm-up's weight expires: the whole limit is free
        burst = [await gov.acquire(PM_BALANCE, account="a", deadline=FAR) for _ in range(10)]
        for i, permit in enumerate(burst[1:], start=2):  # answered in the order they arrived
            permit.complete(200, {"X-MBX-USED-WEIGHT-1M": str(20 * i)})
        burst[0].complete(200, {"X-MBX-USED-WEIGHT-1M": "200"})
        state = gov.snapshot()["papi_ip"]
        started = trio.current_time()
        await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        return state.external, state.used, trio.current_time() - started

    external, used, waited = run(main)
    assert external == 0
    assert used == 200
    assert waited == pytest.approx(1.0)


def test_room_from_expiry_waits_for_the_exchange_to_confirm_it() -> None:
    """An exchange counting in fixed windows has dropped our old weight already, so outside
    weight hides behind it; when it expires here, that frees nothing there. Only one request
    goes to ask, and the rest wait for its answer."""

    async def main() -> list[int]:
        gov = governor(papi_ip=100)
        await warm(gov, PM_BALANCE)  # t = 1
        for used in (20, 40):
            (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(
                200, {"X-MBX-USED-WEIGHT-1M": str(used)}
            )
        await trio.sleep(0.5)  # t = 1.5: the exchange's window turns; 60 spent outside since
        (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(
            200, {"X-MBX-USED-WEIGHT-1M": "80"}
        )
        await trio.sleep(0.51)  # our first 40 expire here; the exchange still counts 80
        granted: list[Any] = []
        counts = []

        async def call() -> None:
            granted.append(await gov.acquire(PM_BALANCE, account="a", deadline=FAR))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
            await trio.sleep(0.1)
            counts.append(len(granted))  # the one that asks
            granted[0].complete(200, {"X-MBX-USED-WEIGHT-1M": "40"})  # the exchange's turn
            await trio.sleep(0.01)
            counts.append(len(granted))  # room confirmed: the rest go
            for permit in granted[1:]:
                permit.complete(200, {})
        return counts

    assert run(main) == [1, 3]


def test_headers_that_report_less_change_nothing() -> None:
    async def main() -> int:
        gov = governor(papi_ip=100)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(200, {"X-MBX-USED-WEIGHT-1M": "3"})  # a fixed window just turned
        return gov.snapshot()["papi_ip"].used

    assert run(main) == 20


def test_header_interval_is_read_from_the_name() -> None:
    async def main() -> int:
        gov = governor(papi_ip=1000)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(200, {"X-MBX-USED-WEIGHT-1D": "900", "X-MBX-USED-WEIGHT-1M": "50"})
        return gov.snapshot()["papi_ip"].external

    assert run(main) == 30  # from the one-minute header, not the one-day one


def test_429_shuts_the_bucket_for_everyone_until_retry_after() -> None:
    async def main() -> list[float]:
        gov = governor(papi_ip=1000)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        permit.complete(429, {"Retry-After": "2"})
        times: list[float] = []

        async def other(account: str) -> None:
            (await gov.acquire(PM_BALANCE, account=account, deadline=FAR)).complete(200, {})
            times.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for account in ("b", "c", "d"):
                nursery.start_soon(other, account)
        return times

    assert run(main) == [pytest.approx(2.0)] * 3


def test_429_without_retry_after_waits_a_window() -> None:
    async def main() -> float:
        gov = governor(papi_ip=1000, window=3.0)
        (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(429, {})
        await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        return trio.current_time()

    assert run(main) == pytest.approx(3.0)


def test_429_with_a_near_deadline_is_a_rate_limit_error() -> None:
    async def main() -> RateLimitError:
        gov = governor(papi_ip=1000)
        (await gov.acquire(PM_BALANCE, account="a", deadline=FAR)).complete(
            429, {"Retry-After": "5"}
        )
        with pytest.raises(RateLimitError) as caught:
            await gov.acquire(PM_BALANCE, account="b", deadline=trio.current_time() + 1)
        return caught.value

    error = run(main)
    assert error.retry_after == pytest.approx(5.0)


def test_418_shuts_the_whole_family_uid_calls_included() -> None:
    async def main() -> tuple[IPBannedError, float]:
        gov = governor()
        (await gov.acquire(PM_PRO_SPAN_ACCOUNT, account="a", deadline=FAR)).complete(
            418, {"Retry-After": "4"}
        )
        with pytest.raises(IPBannedError) as caught:
            await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=trio.current_time() + 1)
        await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=FAR)
        return caught.value, trio.current_time()

    error, granted_at = run(main)
    assert error.banned_until is not None
    assert granted_at == pytest.approx(4.0)


def test_uid_call_refused_for_ip_weight_learns_that_uid_calls_cost_ip() -> None:
    async def main() -> int:
        gov = governor(sapi_ip=100)
        permit = await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=FAR)
        permit.complete(
            429,
            {
                "X-SAPI-USED-IP-WEIGHT-1M": "100",
                "X-SAPI-USED-UID-WEIGHT-1M": "5",
                "Retry-After": "1",
            },
        )
        return gov.sapi_uid_ip_weight

    assert run(main) == PM_PRO_ACCOUNT.weight


@pytest.mark.parametrize("costs", [True, False])
def test_uid_answers_whose_ip_count_grows_with_them_teach_the_cost_before_any_429(
    costs: bool,
) -> None:
    """UID calls alone, one after another: the IP count their answers report grows by the call's
    weight each time only when the exchange charges them IP weight."""

    async def main() -> list[int]:
        gov = governor(sapi_ip=10_000, sapi_uid=10_000)
        count, learned = 0, []
        for i in range(12):
            permit = await gov.acquire(PM_PRO_ACCOUNT, account=f"a{i % 3}", deadline=FAR)
            count += PM_PRO_ACCOUNT.weight if costs else 0
            permit.complete(200, {"X-SAPI-USED-IP-WEIGHT-1M": str(count)})
            learned.append(gov.sapi_uid_ip_weight)
        return learned

    learned = run(main)
    if costs:
        assert learned[-1] == PM_PRO_ACCOUNT.weight
        assert learned.index(PM_PRO_ACCOUNT.weight) <= 8  # after six pairs showing it
    else:
        assert learned == [0] * 12


def test_other_spending_now_and_then_teaches_no_uid_cost() -> None:
    """Another party's weight shows between some UID answers, not nearly all: no lesson."""

    async def main() -> int:
        gov = governor(sapi_ip=10_000, sapi_uid=10_000)
        count = 100
        for i in range(40):
            permit = await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=FAR)
            count += 20 if i % 3 == 0 else 0
            permit.complete(200, {"X-SAPI-USED-IP-WEIGHT-1M": str(count)})
        return gov.sapi_uid_ip_weight

    assert run(main) == 0


def test_learned_uid_cost_makes_uid_calls_wait_for_ip_room() -> None:
    async def main() -> float:
        gov = governor(sapi_ip=50, sapi_uid=10_000)
        count = 0
        while not gov.sapi_uid_ip_weight:
            permit = await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=FAR)
            count += PM_PRO_ACCOUNT.weight
            permit.complete(200, {"X-SAPI-USED-IP-WEIGHT-1M": str(count)})
        assert count < 50  # learned before the IP limit was reached
        start = trio.current_time()
        for _ in range(50 // PM_PRO_ACCOUNT.weight):
            permit = await gov.acquire(PM_PRO_ACCOUNT, account="a", deadline=FAR)
            count += PM_PRO_ACCOUNT.weight
            permit.complete(200, {"X-SAPI-USED-IP-WEIGHT-1M": str(count)})
        return trio.current_time() - start

    assert run(main) > 0  # the IP budget, not the UID one, made them wait


def test_sapi_scope_endpoint_gives_each_sapi_endpoint_its_own_ip_budget() -> None:
    async def main() -> tuple[dict[str, int], float]:
        gov = governor(sapi_ip=40, sapi_scope="endpoint")
        for endpoint in (PM_PRO_BALANCE, PM_PRO_BALANCE, PM_PRO_SPAN_ACCOUNT):
            (await gov.acquire(endpoint, account="a", deadline=FAR)).complete(200, {})
        used = {name: state.used for name, state in gov.snapshot().items() if "sapi" in name}
        start = trio.current_time()
        await gov.acquire(PM_PRO_BALANCE, account="a", deadline=FAR)  # 40 held: waits
        return used, trio.current_time() - start

    used, waited = run(main)
    assert used == {
        "sapi_ip:pm_pro_balance": 40,
        "sapi_ip:pm_pro_span_account": 5,
        "sapi_ip:pm_pro_account": 0,  # what a UID call's answer reports on
    }
    assert waited == pytest.approx(1.0)


def test_sapi_scope_family_is_the_default_and_other_values_are_refused() -> None:
    assert Governor().sapi_scope == "family"
    assert "sapi_ip" in Governor().snapshot()
    assert "sapi_ip" not in Governor(sapi_scope="endpoint").snapshot()
    with pytest.raises(ValueError, match="sapi_scope"):
        Governor(sapi_scope="uid")
    with pytest.raises(ValueError, match="sapi_uid_ip_weight"):
        Governor(sapi_uid_ip_weight=-1)


def test_weight_over_the_limit_is_refused_at_once() -> None:
    async def main() -> None:
        gov = governor(papi_ip=10)
        await gov.acquire(PM_BALANCE, account="a", deadline=FAR)

    with pytest.raises(ValueError, match="could never be sent"):
        run(main)


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 0}, {"headroom": 1.0}, {"sapi_scope": "uid"}, {"on_store_error": "open"}],
)
def test_bad_options_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"window|headroom|sapi_scope|on_store_error"):
        Governor(**kwargs)


def test_headroom_lowers_every_limit() -> None:
    snapshot = Governor(headroom=0.1).snapshot()

    assert snapshot["papi_ip"].limit == 5400
    assert snapshot["fapi_ip"].limit == 2160


def test_snapshot_reports_each_budget() -> None:
    async def main() -> dict[str, Any]:
        gov = governor(papi_ip=100)
        permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
        await trio.sleep(0.25)
        permit.complete(429, {"Retry-After": "0.5", "X-MBX-USED-WEIGHT-1M": "100"})
        return {"snapshot": gov.snapshot(), "repr": repr(gov)}

    result = run(main)
    papi = result["snapshot"]["papi_ip"]
    assert papi.limit == 100
    assert papi.used == 100
    assert papi.rejections == 1
    assert papi.closed_for == pytest.approx(0.5)
    assert papi.resets_in == pytest.approx(1.0)
    assert papi.waiters == 0
    assert "papi_ip 100/100" in result["repr"]


def test_limits_are_the_published_ones_by_default_and_checked_when_made() -> None:
    assert Limits() == Limits(
        api_ip=6_000,
        sapi_ip=12_000,
        sapi_uid=180_000,
        papi_ip=6_000,
        fapi_ip=2_400,
        ws_connect=300,
        ws_window=300.0,
    )
    assert Limits(papi_ip=600)["papi_ip"] == 600
    assert Limits().scaled(0.001, least=20) == Limits(
        api_ip=20, sapi_ip=20, sapi_uid=180, papi_ip=20, fapi_ip=20, ws_connect=20, ws_window=0.3
    )
    with pytest.raises(ValueError, match="ws_window must be positive seconds"):
        Limits(ws_window=0)
    with pytest.raises(TypeError, match="ws_connect limit must be an int"):
        Limits(ws_connect=2.5)  # type: ignore[arg-type]
    assert Governor(limits=Limits(papi_ip=600)).snapshot()["papi_ip"].limit == 600
    with pytest.raises(ValueError, match="papi_ip limit must be positive"):
        Limits(papi_ip=0)
    with pytest.raises(TypeError, match="sapi_ip limit must be an int"):
        Limits(sapi_ip=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limits must be a Limits"):
        Governor(limits={"papi_ip": 600})  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        Limits()["dapi_ip"]


# -- refusals whose headers say absurd things (on asyncio, the real clock: nothing waits) -----


async def test_a_418_with_an_infinite_retry_after_shuts_the_family_for_at_most_three_days() -> None:
    gov = Governor()
    permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
    permit.complete(418, {"Retry-After": "inf"})
    state = gov.snapshot()["papi_ip"]
    assert 0 < state.closed_for <= LONGEST_BAN
    with pytest.raises(IPBannedError):  # typed, at once: no OverflowError for later calls
        await gov.acquire(PM_BALANCE, account="a", deadline=time.monotonic() + 1)


async def test_a_retry_after_of_31_years_is_capped_and_reopen_opens_it_by_hand() -> None:
    gov = Governor()
    permit = await gov.acquire(PM_PRO_ACCOUNT, account="acct", deadline=FAR)
    permit.complete(429, {"Retry-After": "1000000000", "X-SAPI-USED-UID-WEIGHT-1M": "180000"})
    name = next(n for n in gov.snapshot() if n.startswith("sapi_uid"))
    assert 0 < gov.snapshot()[name].closed_for <= LONGEST_BAN

    gov.reopen(name)

    assert gov.snapshot()[name].closed_for == 0
    with pytest.raises(KeyError):
        gov.reopen("no_such_budget")


async def test_retry_after_zero_still_shuts_the_budget_for_a_moment() -> None:
    gov = Governor()
    permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
    permit.complete(429, {"Retry-After": "0", "X-MBX-USED-WEIGHT-1M": "6000"})
    assert gov.snapshot()["papi_ip"].closed_for > 0.5
    assert gov.try_acquire(PM_BALANCE, account="a") is None


def test_uid_budget_names_of_keys_that_mask_alike_are_made_in_constant_time() -> None:
    gov = Governor()
    keys = [f"AAAA{i:08d}ZZZZ" for i in range(20_000)]
    started = time.perf_counter()
    for key in keys:
        gov.try_acquire(PM_PRO_ACCOUNT, account=key)  # each account's budget made
    elapsed = time.perf_counter() - started
    names = [name for name in gov.snapshot() if name.startswith("sapi_uid")]
    assert len(set(names)) == len(keys)
    assert names[:3] == ["sapi_uid:AAAA…ZZZZ", "sapi_uid:AAAA…ZZZZ#2", "sapi_uid:AAAA…ZZZZ#3"]
    assert elapsed < 10.0  # quadratic took minutes for this many; linear takes milliseconds

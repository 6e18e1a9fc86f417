"""Properties of the governor over random workloads (hypothesis), run on trio's MockClock.

For every workload: the weight that reaches the exchange in any interval of one window stays
within each limit (wherever between send and answer the exchange counts a request), calls are
let out first come, first served per budget, patient calls are all served, and nothing leaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binance_pm import Governor, GovernorTimeout, Limits
from binance_pm._endpoints import (
    PM_BALANCE,
    PM_PRO_ACCOUNT,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
    Endpoint,
)

WINDOW = 1.0
LIMITS = {"papi_ip": 60, "sapi_ip": 40, "sapi_uid": 15}
ENDPOINTS: list[Endpoint[Any]] = [PM_BALANCE, PM_PRO_ACCOUNT, PM_PRO_BALANCE, PM_PRO_SPAN_ACCOUNT]
ACCOUNTS = ["A" * 60 + "0001", "B" * 60 + "0002"]


@dataclass
class Call:
    start: float
    endpoint: int
    account: int
    latency: float
    counted_at: float  # where in the round trip the exchange counts it, 0..1
    fate: str  # "ok", "impatient" (gives up waiting), "never_left", "external"
    patience: float
    external: int


calls = st.builds(
    Call,
    start=st.floats(0, 2, allow_nan=False),
    endpoint=st.integers(0, len(ENDPOINTS) - 1),
    account=st.integers(0, len(ACCOUNTS) - 1),
    latency=st.floats(0, 0.6, allow_nan=False),
    counted_at=st.floats(0, 1, allow_nan=False),
    fate=st.sampled_from(["ok", "ok", "ok", "impatient", "never_left", "external"]),
    patience=st.floats(0.01, 1.5, allow_nan=False),
    external=st.integers(0, 30),
)


@dataclass
class Log:
    asked: list[tuple[int, int]] = field(default_factory=list)  # (call, order asked)
    granted: dict[int, int] = field(default_factory=dict)  # call -> order granted
    arrivals: list[tuple[float, int, list[str]]] = field(default_factory=list)
    refused_patient: list[int] = field(default_factory=list)
    waiting_at_end: int = -1


def budgets(call: Call, uid_ip: int) -> list[tuple[str, int]]:
    endpoint = ENDPOINTS[call.endpoint]
    if endpoint.bucket == "uid":
        taken = [(f"uid:{call.account}", endpoint.weight)]
        if uid_ip:
            taken.append(("sapi_ip", uid_ip))
        return taken
    return [(endpoint.budget.limit, endpoint.weight)]


def exchange_count(
    log: Log, bucket: str, at: float, weights: dict[int, list[tuple[str, int]]]
) -> int:
    total = 0
    for when, call, _ in log.arrivals:
        if at - WINDOW < when <= at:
            total += sum(w for b, w in weights[call] if b == bucket)
    return total


async def play(workload: list[Call], uid_ip: int, log: Log) -> Governor:
    gov = Governor(
        window=WINDOW,
        clock=trio.current_time,
        sapi_uid_ip_weight=uid_ip,
        limits=Limits(
            papi_ip=LIMITS["papi_ip"], sapi_ip=LIMITS["sapi_ip"], sapi_uid=LIMITS["sapi_uid"]
        ),
    )
    weights = {i: budgets(c, uid_ip) for i, c in enumerate(workload)}
    counter = iter(range(10**9))

    async def one(i: int, call: Call) -> None:
        await trio.sleep(call.start)
        endpoint = ENDPOINTS[call.endpoint]
        log.asked.append((i, next(counter)))
        patient = call.fate != "impatient"
        deadline = trio.current_time() + (1000.0 if patient else call.patience)
        try:
            permit = await gov.acquire(endpoint, account=ACCOUNTS[call.account], deadline=deadline)
        except GovernorTimeout:
            if patient:
                log.refused_patient.append(i)
            return
        log.granted[i] = next(counter)
        if call.fate == "never_left":
            permit.cancel()
            return
        await trio.sleep(call.latency * call.counted_at)
        log.arrivals.append((trio.current_time(), i, [b for b, _ in weights[i]]))
        await trio.sleep(call.latency * (1 - call.counted_at))
        headers = {}
        if call.fate == "external":  # another process spent weight: the headers say so
            for bucket, _ in weights[i]:
                used = exchange_count(log, bucket, trio.current_time(), weights) + call.external
                if bucket == "papi_ip":
                    headers["X-MBX-USED-WEIGHT-1M"] = str(used)
                elif bucket == "sapi_ip":
                    headers["X-SAPI-USED-IP-WEIGHT-1M"] = str(used)
                else:
                    headers["X-SAPI-USED-UID-WEIGHT-1M"] = str(used)
        permit.complete(200, headers)

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(workload):
            nursery.start_soon(one, i, call)
    log.waiting_at_end = sum(state.waiters for state in gov.snapshot().values())
    return gov


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workload=st.lists(calls, min_size=1, max_size=40), uid_ip=st.sampled_from([0, 5]))
def test_no_window_over_the_limit_fifo_and_no_leaks(workload: list[Call], uid_ip: int) -> None:
    log = Log()
    gov = trio.run(play, workload, uid_ip, log, clock=trio.testing.MockClock(autojump_threshold=0))
    weights = {i: budgets(c, uid_ip) for i, c in enumerate(workload)}

    # 1. Any interval of one window, at the exchange, holds at most the limit of each budget.
    per_bucket: dict[str, list[tuple[float, int]]] = {}
    for when, call, _ in log.arrivals:
        for bucket, weight in weights[call]:
            per_bucket.setdefault(bucket, []).append((when, weight))
    for bucket, arrivals in per_bucket.items():
        limit = LIMITS["sapi_uid"] if bucket.startswith("uid:") else LIMITS[bucket]
        arrivals.sort()
        for start, _ in arrivals:
            inside = sum(w for t, w in arrivals if start <= t < start + WINDOW)
            assert inside <= limit, (bucket, start, inside)

    # 2. First come, first served within each budget.
    asked = dict(log.asked)
    for bucket in {b for taken in weights.values() for b, _ in taken}:
        users = sorted(
            (asked[i], log.granted[i])
            for i in log.granted
            if any(b == bucket for b, _ in weights[i])
        )
        grant_order = [g for _, g in users]
        assert grant_order == sorted(grant_order), bucket

    # 3. Patient calls are all served; 4. nothing is left in flight or waiting.
    assert log.refused_patient == []
    assert log.waiting_at_end == 0
    for state in [*gov._ip.values(), *gov._uid.values()]:
        assert state.inflight == 0

"""The one rule for letting a request out, over random histories (hypothesis): the governor's
fast path and its waiters ask ``Ledger.grantable``, whose shortcut (nothing is shut before
``shut_until``) must agree with looking at every budget of the call."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from binance_pm import Governor, Limits, Permit
from binance_pm._endpoints import (
    CLASSIC_PM_ACCOUNT,
    PM_BALANCE,
    PM_PRO_ACCOUNT,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
    Endpoint,
)

WINDOW = 1.0
ENDPOINTS: list[Endpoint[Any]] = [
    PM_BALANCE,
    PM_PRO_ACCOUNT,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
    CLASSIC_PM_ACCOUNT,
]
ACCOUNTS = ["A" * 60 + "0001", "B" * 60 + "0002"]
HEADERS = {"papi": "X-MBX-USED-WEIGHT-1M", "fapi": "X-MBX-USED-WEIGHT-1M"}

ask = st.tuples(st.just("ask"), st.integers(0, len(ENDPOINTS) - 1), st.integers(0, 1))
answer = st.tuples(
    st.just("answer"),
    st.integers(0, 20),  # which permit still out
    st.sampled_from([200, 200, 429, 429, 418, 503, None]),
    st.sampled_from([None, "0", "0.3", "2"]),  # Retry-After
    st.integers(0, 80),  # the used weight the headers report
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 20))
wait = st.tuples(st.just("wait"), st.floats(0.0, 1.5, allow_nan=False))
reopen = st.tuples(st.just("reopen"), st.sampled_from([None, "papi", "sapi", "fapi_ip"]))
ban = st.tuples(st.just("ban"), st.floats(0.01, 1.0, allow_nan=False))
operation = st.one_of(ask, ask, ask, answer, answer, answer, cancel, wait, wait, reopen, ban)


def looked_at_one_by_one(gov: Governor, endpoint: Endpoint[Any], account: str) -> bool:
    """The rule without its shortcut: every budget of the call, each on its own."""
    ledger = gov._ledger
    now = ledger.clock()
    buckets, weights = ledger.plan(endpoint, account)
    return all(
        bucket.closed_until <= now
        and ledger.banned_until[bucket.family] <= now
        and bucket.can_take(weight, now)
        for bucket, weight in zip(buckets, weights, strict=True)
    )


def check(gov: Governor) -> None:
    ledger = gov._ledger
    shuts = [b.closed_until for b in ledger.budgets()] + list(ledger.banned_until.values())
    assert ledger.shut_until >= max(shuts)  # what makes the shortcut safe
    now = ledger.clock()
    for endpoint in ENDPOINTS:
        for account in ACCOUNTS:
            buckets, weights = ledger.plan(endpoint, account)
            rule = ledger.grantable(buckets, weights, now)
            assert rule == looked_at_one_by_one(gov, endpoint, account), endpoint.name


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(operation, min_size=10, max_size=80),
    uid_ip=st.sampled_from([0, 5]),
    scope=st.sampled_from(["family", "endpoint"]),
)
def test_the_fast_path_and_every_budget_looked_at_agree(
    history: list[tuple[Any, ...]], uid_ip: int, scope: str
) -> None:
    now = [0.0]
    gov = Governor(
        window=WINDOW,
        clock=lambda: now[0],
        sapi_uid_ip_weight=uid_ip,
        sapi_scope=scope,
        limits=Limits(papi_ip=60, sapi_ip=40, sapi_uid=15, fapi_ip=30),
    )
    out: list[tuple[Endpoint[Any], Permit]] = []
    check(gov)
    for step in history:
        kind = step[0]
        if kind == "ask":
            endpoint, account = ENDPOINTS[step[1]], ACCOUNTS[step[2]]
            expected = looked_at_one_by_one(gov, endpoint, account)
            permit = gov.try_acquire(endpoint, account=account)
            assert (permit is not None) == expected
            if permit is not None:
                out.append((endpoint, permit))
        elif kind == "answer" and out:
            endpoint, permit = out.pop(step[1] % len(out))
            status, retry_after, used = step[2], step[3], step[4]
            headers: dict[str, str] = {}
            if retry_after is not None:
                headers["Retry-After"] = retry_after
            if endpoint.family == "sapi":
                headers["X-SAPI-USED-IP-WEIGHT-1M"] = str(used)
                headers["X-SAPI-USED-UID-WEIGHT-1M"] = str(used // 4)
            else:
                headers[HEADERS[endpoint.family]] = str(used)
            permit.complete(status, headers if status is not None else None)
        elif kind == "cancel" and out:
            out.pop(step[1] % len(out))[1].cancel()
        elif kind == "wait":
            now[0] += step[1]
        elif kind == "reopen":
            gov.reopen(step[1])
        elif kind == "ban":
            gov.ban_ip(step[1])
        check(gov)

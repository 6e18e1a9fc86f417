"""The simulated exchange's own behaviour, in process (httpx.ASGITransport) with a clock moved
by hand wherever timing matters."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from binance_pm import Limits
from binance_pm._models import AccountStatus, AccountType
from binance_pm.testing import SimAccount, SimulatedExchange


class HandClock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sign(account: SimAccount, query: str) -> str:
    from binance_pm._signing import load_signer

    return load_signer(**account.credentials()).sign(query.encode())


def pick(ex: SimulatedExchange, account_type: AccountType, key_type: str = "HMAC") -> SimAccount:
    return next(a for a in ex.accounts if a.account_type is account_type and a.key_type == key_type)


class Caller:
    """Signs and sends requests by hand, so tests can send what a client never would."""

    def __init__(self, ex: SimulatedExchange, http: httpx.AsyncClient) -> None:
        self.ex = ex
        self.http = http

    async def get(
        self,
        path: str,
        account: SimAccount | None = None,
        *,
        params: str = "",
        timestamp: int | None = None,
        recv_window: int | None = None,
        signature: str | None = None,
        api_key: str | None = None,
    ) -> httpx.Response:
        headers = {}
        if account is None:
            return await self.http.get(path + (f"?{params}" if params else ""))
        parts = [params] if params else []
        if recv_window is not None:
            parts.append(f"recvWindow={recv_window}")
        ts = self.ex.server_ms() if timestamp is None else timestamp
        parts.append(f"timestamp={ts}")
        query = "&".join(parts)
        sig = signature if signature is not None else sign(account, query)
        headers["X-MBX-APIKEY"] = api_key if api_key is not None else account.api_key
        return await self.http.get(f"{path}?{query}&signature={sig}", headers=headers)


async def make(**kwargs: Any) -> tuple[SimulatedExchange, httpx.AsyncClient]:
    """An exchange in process; limits given by name (``papi_ip=100``)."""
    limits = Limits(**{k: kwargs.pop(k) for k in list(kwargs) if k in Limits.__slots__})
    ex = SimulatedExchange(limits=limits, **kwargs)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=ex), base_url="http://sim")
    return ex, http


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimulatedExchange, Caller, HandClock]]:
    clock = HandClock()
    ex, http = await make(window=1.0, papi_ip=100, sapi_uid=20, accounts=30, seed=7, clock=clock)
    async with http:
        yield ex, Caller(ex, http), clock


def code(response: httpx.Response) -> int:
    value: int = response.json()["code"]
    return value


# -- endpoints and weights ---------------------------------------------------------------------


async def test_time_endpoints_answer_the_server_clock(sim: Any) -> None:
    ex, call, _ = sim
    ex.skew_ms = 1234

    api = await call.get("/api/v3/time")
    fapi = await call.get("/fapi/v1/time")
    ping = await call.get("/papi/v1/ping")

    assert api.json() == {"serverTime": ex.server_ms()}
    assert fapi.json() == {"serverTime": ex.server_ms()}
    assert ping.json() == {}


@pytest.mark.parametrize(
    ("path", "product", "header", "weight"),
    [
        ("/papi/v1/balance", AccountType.PM_2, "X-MBX-USED-WEIGHT-1M", 20),
        ("/sapi/v1/portfolio/balance", AccountType.PM_1, "X-SAPI-USED-IP-WEIGHT-1M", 20),
        ("/sapi/v1/portfolio/account", AccountType.PM_1, "X-SAPI-USED-UID-WEIGHT-1M", 5),
        ("/sapi/v2/portfolio/account", AccountType.PM_3, "X-SAPI-USED-IP-WEIGHT-1M", 5),
        ("/fapi/v1/pmAccountInfo", AccountType.PM_1, "X-MBX-USED-WEIGHT-1M", 5),
    ],
)
async def test_each_endpoint_reports_its_weight_in_the_real_header(
    sim: Any, path: str, product: AccountType, header: str, weight: int
) -> None:
    ex, call, _ = sim
    params = "asset=BTC" if path.startswith("/fapi") else ""

    first = await call.get(path, pick(ex, product), params=params)
    second = await call.get(path, pick(ex, product), params=params)

    assert first.status_code == 200, first.text
    assert int(first.headers[header]) == weight
    assert int(second.headers[header]) == 2 * weight


async def test_sapi_uid_endpoint_reports_ip_weight_too_without_charging_it(sim: Any) -> None:
    ex, call, _ = sim

    answer = await call.get("/sapi/v1/portfolio/account", pick(ex, AccountType.PM_1))

    assert answer.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "0"
    assert ex.stats.weight["sapi_uid"] == 5


async def test_uid_budgets_are_per_account(sim: Any) -> None:
    ex, call, _ = sim
    a = pick(ex, AccountType.PM_1, "HMAC")
    b = pick(ex, AccountType.PM_1, "ED25519")

    for _ in range(4):
        await call.get("/sapi/v1/portfolio/account", a)
    other = await call.get("/sapi/v1/portfolio/account", b)

    assert other.headers["X-SAPI-USED-UID-WEIGHT-1M"] == "5"


async def test_pm_balance_with_asset_is_one_object_without_cross_margin_asset(sim: Any) -> None:
    ex, call, _ = sim

    answer = await call.get("/papi/v1/balance", pick(ex, AccountType.PM_2), params="asset=USDT")

    body = answer.json()
    assert body["asset"] == "USDT"
    assert "crossMarginAsset" not in body


async def test_pm_account_answers_a_pm_account_and_refuses_pm_pro(sim: Any) -> None:
    ex, call, _ = sim

    answer = await call.get("/papi/v1/account", pick(ex, AccountType.PM_2))
    refused = await call.get("/papi/v1/account", pick(ex, AccountType.PM_1))

    body = answer.json()
    assert float(body["uniMMR"]) > 0
    assert body["accountStatus"] in {s.value for s in AccountStatus}
    assert (body["totalAvailableBalance"], body["totalMarginOpenLoss"]) == ("", "")
    assert answer.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    assert (refused.status_code, code(refused)) == (401, -2015)


async def test_span_endpoint_is_refused_for_other_products(sim: Any) -> None:
    ex, call, _ = sim

    answer = await call.get("/sapi/v2/portfolio/account", pick(ex, AccountType.PM_1))

    assert (answer.status_code, code(answer)) == (401, -2015)


async def test_fapi_without_asset_is_minus_1102(sim: Any) -> None:
    ex, call, _ = sim

    answer = await call.get("/fapi/v1/pmAccountInfo", pick(ex, AccountType.PM_1))

    assert (answer.status_code, code(answer)) == (400, -1102)
    assert "asset" in answer.json()["msg"]


# -- authentication ----------------------------------------------------------------------------


async def test_wrong_signature_gets_minus_1022(sim: Any) -> None:
    ex, call, _ = sim
    account = pick(ex, AccountType.PM_2)

    answer = await call.get("/papi/v1/balance", account, signature="0" * 64)

    assert (answer.status_code, code(answer)) == (400, -1022)


@pytest.mark.parametrize("key_type", ["HMAC", "ED25519", "RSA"])
async def test_each_key_type_is_verified_over_the_raw_query(sim: Any, key_type: str) -> None:
    ex, call, _ = sim
    account = pick(ex, AccountType.PM_1, key_type)
    good = await call.get("/sapi/v1/portfolio/account", account)
    other = pick(ex, AccountType.PM_3, key_type)
    forged = sign(other, f"timestamp={ex.server_ms()}")  # signed with another account's key

    bad = await call.get("/sapi/v1/portfolio/account", account, signature=forged)

    assert good.status_code == 200
    assert code(bad) == -1022


async def test_unknown_api_key_gets_minus_2015_and_malformed_minus_2014(sim: Any) -> None:
    ex, call, _ = sim
    account = pick(ex, AccountType.PM_2)

    unknown = await call.get("/papi/v1/balance", account, api_key="x" * 64)
    malformed = await call.get("/papi/v1/balance", account, api_key="")

    assert (unknown.status_code, code(unknown)) == (401, -2015)
    assert (malformed.status_code, code(malformed)) == (401, -2014)


async def test_recv_window_over_60000_gets_minus_1131(sim: Any) -> None:
    ex, call, _ = sim

    answer = await call.get("/papi/v1/balance", pick(ex, AccountType.PM_2), recv_window=60_001)

    assert code(answer) == -1131


async def test_timestamps_outside_the_window_get_minus_1021(sim: Any) -> None:
    ex, call, _ = sim
    account = pick(ex, AccountType.PM_2)
    now = ex.server_ms()

    ahead = await call.get("/papi/v1/balance", account, timestamp=now + 1000)
    old = await call.get("/papi/v1/balance", account, timestamp=now - 5001)
    ok_old = await call.get("/papi/v1/balance", account, timestamp=now - 5000)
    ok_ahead = await call.get("/papi/v1/balance", account, timestamp=now + 999)

    assert (code(ahead), code(old)) == (-1021, -1021)
    assert (ok_old.status_code, ok_ahead.status_code) == (200, 200)


async def test_skewed_server_refuses_local_timestamps(sim: Any) -> None:
    ex, call, clock = sim
    ex.skew_ms = -30_000
    account = pick(ex, AccountType.PM_2)

    local = await call.get("/papi/v1/balance", account, timestamp=int(clock() * 1000))

    assert code(local) == -1021


# -- rate limits -------------------------------------------------------------------------------


async def test_weight_past_the_limit_gets_429_with_retry_after_to_the_window_end(sim: Any) -> None:
    ex, call, _clock = sim  # papi_ip=100: five balance calls fit
    account = pick(ex, AccountType.PM_2)
    for _ in range(5):
        assert (await call.get("/papi/v1/balance", account)).status_code == 200

    refused = await call.get("/papi/v1/balance", account)

    assert (refused.status_code, code(refused)) == (429, -1003)
    assert float(refused.headers["Retry-After"]) == pytest.approx(0.75, abs=0.002)
    assert refused.headers["X-MBX-USED-WEIGHT-1M"] == "120"  # counted on arrival all the same


async def test_fixed_window_resets_at_the_boundary(sim: Any) -> None:
    ex, call, clock = sim
    account = pick(ex, AccountType.PM_2)
    for _ in range(5):
        await call.get("/papi/v1/balance", account)

    clock.now += 0.75  # the next window of the server clock
    answer = await call.get("/papi/v1/balance", account)

    assert answer.status_code == 200
    assert answer.headers["X-MBX-USED-WEIGHT-1M"] == "20"


async def test_sliding_window_frees_weight_as_it_ages() -> None:
    clock = HandClock(1_700_000_000.0)
    ex, http = await make(window=1.0, papi_ip=100, accounts=3, window_mode="sliding", clock=clock)
    call = Caller(ex, http)
    account = pick(ex, AccountType.PM_2)
    async with http:
        for _ in range(5):
            await call.get("/papi/v1/balance", account)
            clock.now += 0.1
        refused = await call.get("/papi/v1/balance", account)  # t=0.5: 100, and 20 refused
        clock.now += 0.61  # t=1.11: the calls at t=0 and t=0.1 have aged out
        admitted = await call.get("/papi/v1/balance", account)

    assert refused.status_code == 429
    # The refused call counts too (weight is counted on arrival), so two calls must age out.
    assert float(refused.headers["Retry-After"]) == pytest.approx(0.6, abs=0.002)
    assert admitted.status_code == 200
    assert admitted.headers["X-MBX-USED-WEIGHT-1M"] == "100"


async def test_client_that_ignores_429_is_banned_and_bans_double(sim: Any) -> None:
    ex, call, clock = sim  # window 1 s: first ban 2 s
    account = pick(ex, AccountType.PM_2)
    for _ in range(5):
        await call.get("/papi/v1/balance", account)
    assert (await call.get("/papi/v1/balance", account)).status_code == 429
    clock.now += 0.11  # past the grace (a tenth of the window) for requests already on their way

    banned = await call.get("/papi/v1/balance", account)  # within Retry-After

    assert (banned.status_code, code(banned)) == (418, -1003)
    assert "IP banned until" in banned.json()["msg"]
    assert float(banned.headers["Retry-After"]) == pytest.approx(2.0)
    clock.now += 1.0
    still = await call.get("/papi/v1/ping")
    assert still.status_code == 418  # the whole family is banned, weight or not
    clock.now += 1.01
    for _ in range(5):
        assert (await call.get("/papi/v1/balance", account)).status_code == 200
    await call.get("/papi/v1/balance", account)  # 429
    clock.now += 0.11
    second_ban = await call.get("/papi/v1/balance", account)
    assert float(second_ban.headers["Retry-After"]) == pytest.approx(4.0)
    assert ex.stats.bans == 2


async def test_requests_already_on_their_way_get_429_not_a_ban(sim: Any) -> None:
    ex, call, clock = sim
    account = pick(ex, AccountType.PM_2)
    for _ in range(5):
        await call.get("/papi/v1/balance", account)
    first = await call.get("/papi/v1/balance", account)
    clock.now += 0.05  # within the grace: these were sent before the 429 reached the client

    in_flight = [await call.get("/papi/v1/balance", account) for _ in range(3)]

    assert first.status_code == 429
    assert [a.status_code for a in in_flight] == [429, 429, 429]
    assert ex.stats.bans == 0


async def test_a_client_that_keeps_sending_after_a_429_is_banned_within_a_few_requests(
    sim: Any,
) -> None:
    """In quick succession, all within the time grace: the grace counts requests too."""
    ex, call, _ = sim  # grace_requests=5 by default
    account = pick(ex, AccountType.PM_2)
    for _ in range(5):
        await call.get("/papi/v1/balance", account)

    statuses = [(await call.get("/papi/v1/balance", account)).status_code for _ in range(8)]

    assert statuses[:6] == [429] * 6  # the 429, then five that may have been on their way
    assert statuses[6] == 418
    assert ex.stats.bans == 1


@pytest.mark.parametrize("grace_requests", [0, 2])
async def test_grace_requests_sets_how_many_refused_requests_are_spared(
    grace_requests: int,
) -> None:
    """At the exchange's own 60 s window too, where the time grace is a whole second."""
    ex, http = await make(papi_ip=100, accounts=3, seed=7, grace_requests=grace_requests)
    async with http:
        call = Caller(ex, http)
        account = pick(ex, AccountType.PM_2)
        for _ in range(5):
            await call.get("/papi/v1/balance", account)
        statuses = [(await call.get("/papi/v1/balance", account)).status_code for _ in range(4)]

    assert statuses[: grace_requests + 1] == [429] * (grace_requests + 1)
    assert statuses[grace_requests + 1] == 418


async def test_a_raw_client_sending_flat_out_over_tcp_is_banned_within_a_few_requests() -> None:
    async with SimulatedExchange(limits=Limits(papi_ip=100), accounts=3, seed=7) as ex:
        account = pick(ex, AccountType.PM_2)
        async with httpx.AsyncClient(base_url=ex.base_url) as http:
            call = Caller(ex, http)
            statuses: list[int] = []
            with anyio.fail_after(10):
                while 418 not in statuses:
                    statuses.append((await call.get("/papi/v1/balance", account)).status_code)
    first_429 = statuses.index(429)
    assert statuses.index(418) - first_429 <= 6, statuses


async def test_uid_calls_that_cost_ip_weight_raise_the_ip_count_and_meet_its_limit() -> None:
    clock = HandClock()
    ex, http = await make(
        window=1.0, sapi_ip=12, sapi_uid=1000, accounts=6, seed=7, clock=clock, uid_costs_ip=True
    )
    async with http:
        call = Caller(ex, http)
        account = pick(ex, AccountType.PM_1)
        answers = [await call.get("/sapi/v1/portfolio/account", account) for _ in range(3)]

    assert [a.headers["X-SAPI-USED-IP-WEIGHT-1M"] for a in answers[:2]] == ["5", "10"]
    assert [a.status_code for a in answers] == [200, 200, 429]  # 15 > 12: the IP limit refused
    assert answers[2].headers["X-SAPI-USED-UID-WEIGHT-1M"] == "15"  # far under its own limit
    assert "Retry-After" in answers[2].headers
    assert ex.stats.weight["sapi_ip"] == 15


async def test_uid_calls_cost_no_ip_weight_as_documented_by_default(sim: Any) -> None:
    ex, call, _ = sim
    account = pick(ex, AccountType.PM_1)
    answers = [await call.get("/sapi/v1/portfolio/account", account) for _ in range(3)]
    assert [a.headers["X-SAPI-USED-IP-WEIGHT-1M"] for a in answers] == ["0", "0", "0"]


async def test_uid_costs_ip_takes_a_weight_of_its_own() -> None:
    ex, http = await make(window=1.0, accounts=6, seed=7, uid_costs_ip=1, clock=HandClock())
    async with http:
        call = Caller(ex, http)
        account = pick(ex, AccountType.PM_1)
        answers = [await call.get("/sapi/v1/portfolio/account", account) for _ in range(2)]
    assert [a.headers["X-SAPI-USED-IP-WEIGHT-1M"] for a in answers] == ["1", "2"]


@pytest.mark.parametrize("scope", ["family", "endpoint"])
async def test_sapi_scope_counts_the_sapi_ip_limit_per_endpoint_or_together(scope: str) -> None:
    ex, http = await make(
        window=1.0, sapi_ip=40, accounts=6, seed=7, sapi_scope=scope, clock=HandClock()
    )
    async with http:
        call = Caller(ex, http)
        account = pick(ex, AccountType.PM_3)
        balance = [await call.get("/sapi/v1/portfolio/balance", account) for _ in range(2)]
        span = await call.get("/sapi/v2/portfolio/account", account)
        uid = await call.get("/sapi/v1/portfolio/account", account)

    assert [a.headers["X-SAPI-USED-IP-WEIGHT-1M"] for a in balance] == ["20", "40"]
    if scope == "endpoint":
        assert span.status_code == 200  # a limit of its own
        assert span.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "5"
        assert uid.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "0"  # its own, and it costs none
        assert ex.stats.weight["sapi_ip:pm_pro_balance"] == 40
        assert ex.stats.weight["sapi_ip:pm_pro_span_account"] == 5
        assert ex.governor().sapi_scope == "endpoint"
    else:
        assert span.status_code == 429  # 45 > 40 together
        assert uid.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "45"
        assert ex.stats.weight["sapi_ip"] == 45


async def test_other_families_are_not_affected_by_a_ban(sim: Any) -> None:
    ex, call, _ = sim
    account = pick(ex, AccountType.PM_2)
    for _ in range(7):
        await call.get("/papi/v1/balance", account)

    fapi = await call.get("/fapi/v1/pmAccountInfo", pick(ex, AccountType.PM_1), params="asset=BTC")

    assert fapi.status_code == 200


async def test_client_that_waits_out_retry_after_is_not_banned(sim: Any) -> None:
    ex, call, clock = sim
    account = pick(ex, AccountType.PM_2)
    for _ in range(6):
        await call.get("/papi/v1/balance", account)
    clock.now += 0.751

    answer = await call.get("/papi/v1/balance", account)

    assert answer.status_code == 200
    assert ex.stats.bans == 0


async def test_uid_budget_has_its_own_429(sim: Any) -> None:
    ex, call, _ = sim  # sapi_uid=20: four account calls fit
    account = pick(ex, AccountType.PM_1)
    for _ in range(4):
        assert (await call.get("/sapi/v1/portfolio/account", account)).status_code == 200

    refused = await call.get("/sapi/v1/portfolio/account", account)
    other = await call.get("/sapi/v1/portfolio/account", pick(ex, AccountType.PM_3))

    assert refused.status_code == 429
    assert other.status_code == 200


async def test_external_weight_shows_in_headers_and_causes_429() -> None:
    clock = HandClock(1_700_000_000.0)  # at a window's start
    ex, http = await make(window=1.0, sapi_ip=1000, external={"sapi": 0.5}, accounts=3, clock=clock)
    call = Caller(ex, http)
    account = pick(ex, AccountType.PM_1)
    async with http:
        early = await call.get("/sapi/v1/portfolio/balance", account)
        clock.now += 0.5
        middle = await call.get("/sapi/v1/portfolio/balance", account)
        clock.now += 0.49  # the other process has spent 495 of 1000 by now
        admitted = 2
        while (await call.get("/sapi/v1/portfolio/balance", account)).status_code == 200:
            admitted += 1

    assert early.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "20"
    assert middle.headers["X-SAPI-USED-IP-WEIGHT-1M"] == str(40 + 250)
    assert admitted * 20 == 500  # 1000 less the other process's 495, in calls of 20
    assert ex.stats.weight["sapi_ip"] == 20 * (admitted + 1)  # phantom weight is never in stats


# -- faults ------------------------------------------------------------------------------------


async def test_each_fault_kind_occurs_at_its_rate() -> None:
    rates = {"503": 0.1, "reset": 0.05, "slow": 0.05, "garbage": 0.1, "html": 0.1}
    ex, http = await make(faults=rates, slow_seconds=0.0, accounts=3, seed=3)
    n = 2000
    async with http:
        for _ in range(n):
            with contextlib.suppress(httpx.ReadError):  # the "reset" fault, in process
                await http.get("/papi/v1/ping")

    for kind, p in rates.items():
        expected = n * p
        spread = 4 * (n * p * (1 - p)) ** 0.5  # four standard deviations
        assert abs(ex.stats.faults[kind] - expected) < spread, (kind, ex.stats.faults)


async def test_fault_answers_have_their_shapes() -> None:
    answers = {}
    for kind in ("503", "garbage", "html"):
        _ex, http = await make(faults={kind: 1.0}, accounts=3)
        async with http:
            answers[kind] = await http.get("/api/v3/time")

    assert (answers["503"].status_code, code(answers["503"])) == (503, -1008)
    with pytest.raises(json.JSONDecodeError):
        answers["garbage"].json()
    assert answers["garbage"].status_code == 200
    assert answers["html"].status_code == 502
    assert answers["html"].text.startswith("<html>")


async def test_a_slow_answer_is_given_up_when_the_client_goes_away() -> None:
    async with SimulatedExchange(accounts=3, faults={"slow": 1.0}, slow_seconds=30) as ex:
        async with httpx.AsyncClient(base_url=ex.base_url) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/api/v3/time", timeout=0.2)
            assert ex.stats.in_flight == 1
        # The client has closed the connection: the exchange stops stalling at once, not in
        # 30 s (nor at the server's stop, which would cancel it).
        with anyio.fail_after(2):
            while ex.stats.in_flight:  # noqa: ASYNC110 (no event to wait on: a count going to 0)
                await anyio.sleep(0.01)


async def test_same_seed_gives_same_accounts_and_faults() -> None:
    a, http_a = await make(accounts=12, seed=5, faults={"503": 0.3})
    b, http_b = await make(accounts=12, seed=5, faults={"503": 0.3})
    async with http_a, http_b:
        codes_a = [(await http_a.get("/papi/v1/ping")).status_code for _ in range(30)]
        codes_b = [(await http_b.get("/papi/v1/ping")).status_code for _ in range(30)]

    assert [x.api_key for x in a.accounts] == [x.api_key for x in b.accounts]
    assert [x.secret for x in a.accounts] == [x.secret for x in b.accounts]
    assert codes_a == codes_b


def test_same_seed_gives_the_same_rsa_keys_and_another_seed_others() -> None:
    def rsa_keys(seed: int) -> list[bytes | None]:
        accounts = SimulatedExchange(accounts=40, seed=seed).accounts
        return [a.private_key for a in accounts if a.key_type == "RSA"]

    first = rsa_keys(11)
    assert len(first) == 4
    assert all(first)
    assert first == rsa_keys(11)
    assert not set(first) & set(rsa_keys(12))


# -- accounts ----------------------------------------------------------------------------------


def test_accounts_cover_every_product_and_key_type() -> None:
    ex = SimulatedExchange(accounts=30)

    combos = {(a.account_type, a.key_type) for a in ex.accounts}

    assert len(combos) == 9
    assert all("secret" not in repr(a) and a.api_key not in repr(a) for a in ex.accounts)


async def test_some_accounts_drift_into_margin_call() -> None:
    clock = HandClock()
    ex, http = await make(accounts=30, seed=2, clock=clock)
    call = Caller(ex, http)
    statuses: set[str] = set()
    async with http:
        for _ in range(3):
            clock.now += 40
            for account in ex.accounts:
                if account.account_type is AccountType.PM_1:
                    body = (await call.get("/sapi/v1/portfolio/account", account)).json()
                    statuses.add(body["accountStatus"])

    assert "NORMAL" in statuses
    assert statuses - {"NORMAL"}, "no account left NORMAL"


async def test_documented_odd_values_appear_on_some_accounts(sim: Any) -> None:
    ex, call, _ = sim
    bodies = []
    for account in ex.accounts:
        if account.account_type is AccountType.PM_2:
            bodies.append((await call.get("/papi/v1/balance", account)).text)
        elif account.account_type is AccountType.PM_1:
            bodies.append((await call.get("/sapi/v1/portfolio/account", account)).text)
        ex._ip["papi"] = type(ex._ip["papi"])(10**9, 1000.0, "fixed")  # lift the tiny test limit
        ex._uid.clear()

    text = "\n".join(bodies)
    assert '"cmUnrealizedPNL":""' in text
    assert any(
        '"totalAvailableBalance":"' in b
        and "," in b.split('"totalAvailableBalance":"')[1].split('"')[0]
        for b in bodies
    )


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="faults"):
        SimulatedExchange(faults={"boom": 0.1})
    with pytest.raises(ValueError, match="external"):
        SimulatedExchange(external={"dapi": 0.1})
    with pytest.raises(ValueError, match="window"):
        SimulatedExchange(window=0)
    with pytest.raises(ValueError, match="sapi_scope"):
        SimulatedExchange(sapi_scope="uid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uid_costs_ip"):
        SimulatedExchange(uid_costs_ip=-5)
    with pytest.raises(ValueError, match="grace_requests"):
        SimulatedExchange(grace_requests=-1)
    with pytest.raises(TypeError, match="grace_requests"):
        SimulatedExchange(grace_requests=2.5)  # type: ignore[arg-type]


def test_hmac_helper_matches_exchange_rule() -> None:
    ex = SimulatedExchange(accounts=1)
    account = ex.accounts[0]
    assert account.secret is not None
    expected = hmac.new(account.secret.encode(), b"timestamp=1", hashlib.sha256).hexdigest()

    assert sign(account, "timestamp=1") == expected

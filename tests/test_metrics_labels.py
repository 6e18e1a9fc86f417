"""``watch --metrics-port``: a UID budget's metrics name its account, so they join the account
metrics; IP budgets name none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from binance_pm import AsyncClient, Governor, Session
from binance_pm._cli.board import Board, Row
from binance_pm._cli.metrics import BoardCollector
from binance_pm._endpoints import ENDPOINTS

SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
PRO_KEY = "proAccountKey000000000000000000000000000000000000000000000000001"
PM_KEY = "pmAccountKey0000000000000000000000000000000000000000000000000002"
BUDGET_METRICS = (
    "binance_pm_budget_used",
    "binance_pm_budget_limit",
    "binance_pm_budget_closed_seconds",
    "binance_pm_budget_refusals",
)

Labels = dict[str, str]


@pytest.fixture
async def session() -> AsyncIterator[Session]:
    async with Session(governor=Governor()) as opened:
        yield opened


def charge_uid_budget(governor: Governor, client: AsyncClient) -> None:
    """Make the account's UID budget, as its first pm_pro_account call does (nothing sent)."""
    permit = governor.try_acquire(ENDPOINTS["pm_pro_account"], account=client.api_key)
    assert permit is not None
    permit.cancel()


def budget_samples(board: Board, governor: Governor) -> dict[str, list[Labels]]:
    """Each budget metric's samples' labels, as a scrape parses them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board, governor))
    text = generate_latest(registry).decode()
    return {
        family.name: [sample.labels for sample in family.samples]
        for family in text_string_to_metric_families(text)
        if family.name in BUDGET_METRICS
    }


def uid_budget(client: AsyncClient) -> str:
    return ENDPOINTS["pm_pro_account"].budget_for(client.api_key).shown


async def test_a_uid_budget_carries_the_name_of_its_account(session: Session) -> None:
    pro = session.client(PRO_KEY, secret=SECRET, name="desk-pro")
    pm = session.client(PM_KEY, secret=SECRET, name="desk-pm")
    board = Board({pro: Row("desk-pro", "pm_pro_account"), pm: Row("desk-pm", "pm_balance")}, 1.5)
    charge_uid_budget(session.governor, pro)

    samples = budget_samples(board, session.governor)

    for name in BUDGET_METRICS:
        uid = [labels for labels in samples[name] if labels["budget"] == uid_budget(pro)]
        assert uid, name
        assert all(labels["account"] == "desk-pro" for labels in uid), uid


async def test_ip_budgets_name_no_account(session: Session) -> None:
    pro = session.client(PRO_KEY, secret=SECRET, name="desk-pro")
    board = Board({pro: Row("desk-pro", "pm_pro_account")}, 1.5)
    charge_uid_budget(session.governor, pro)

    samples = budget_samples(board, session.governor)

    for name in BUDGET_METRICS:
        ip = [labels for labels in samples[name] if not labels["budget"].startswith("sapi_uid:")]
        assert {labels["budget"] for labels in ip} >= {"papi_ip", "sapi_ip", "fapi_ip"}
        assert all(labels.get("account", "") == "" for labels in ip), ip


async def test_the_budget_label_is_the_snapshots_name(session: Session) -> None:
    pro = session.client(PRO_KEY, secret=SECRET, name="desk-pro")
    board = Board({pro: Row("desk-pro", "pm_pro_account")}, 1.5)
    charge_uid_budget(session.governor, pro)

    samples = budget_samples(board, session.governor)

    shown = {labels["budget"] for labels in samples["binance_pm_budget_used"]}
    assert shown == set(session.governor.snapshot())
    assert uid_budget(pro) == f"sapi_uid:{PRO_KEY[:4]}…{PRO_KEY[-4:]}"  # the key, masked


async def test_budgets_of_keys_that_mask_alike_name_no_account(session: Session) -> None:
    # The governor names the second budget "…#2" in the order of first use, which the board
    # cannot tell: neither is named for an account rather than one for the wrong account.
    first = session.client(PRO_KEY, secret=SECRET, name="desk-1")
    twin = PRO_KEY[:4] + "X" * (len(PRO_KEY) - 8) + PRO_KEY[-4:]
    second = session.client(twin, secret=SECRET, name="desk-2")
    rows = {first: Row("desk-1", "pm_pro_account"), second: Row("desk-2", "pm_pro_account")}
    board = Board(rows, 1.5)
    charge_uid_budget(session.governor, second)
    charge_uid_budget(session.governor, first)

    samples = budget_samples(board, session.governor)

    uid = [s for s in samples["binance_pm_budget_used"] if s["budget"].startswith("sapi_uid:")]
    assert sorted(s["budget"] for s in uid) == [uid_budget(first), uid_budget(first) + "#2"]
    assert all("account" not in labels for labels in uid)


class _Fleet:
    """What the board and its metrics read of a fleet: this member holds ``mine``."""

    def __init__(self, mine: set[AsyncClient], holders: dict[AsyncClient, str]) -> None:
        self.name, self.member, self.members, self.trouble = "desk", "a", ("a", "b"), None
        self._mine, self._holders = mine, holders

    def mine(self, client: AsyncClient) -> bool:
        return client in self._mine

    def owner(self, client: AsyncClient) -> str | None:
        return self._holders.get(client)


async def test_in_a_fleet_the_metrics_name_each_accounts_holder_and_tell_only_this_members(
    session: Session,
) -> None:
    ours = session.client(PRO_KEY, secret=SECRET, name="ours")
    theirs = session.client(PM_KEY, secret=SECRET, name="theirs")
    rows = {ours: Row("ours", "pm_pro_account"), theirs: Row("theirs", "pm_account")}
    for row in rows.values():
        row.failures = 1
    board = Board(rows, 1.5, fleet=_Fleet({ours}, {ours: "a", theirs: "b"}))
    board.refresh()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board, session.governor))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    members = [s.labels["member"] for s in families["binance_pm_fleet_member"].samples]
    assert members == ["a", "b"]
    holders = {
        s.labels["account"]: s.labels["member"]
        for s in families["binance_pm_account_holder"].samples
    }
    assert holders == {"ours": "a", "theirs": "b"}
    failures = {s.labels["account"] for s in families["binance_pm_account_failures"].samples}
    assert failures == {"ours"}  # another member's account is that member's to tell
    assert rows[theirs].state(0.0) == "held by b"

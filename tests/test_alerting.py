"""``examples/prometheus/alerts.yml`` and ``examples/grafana/dashboard.json`` ask only for what
``watch --metrics-port`` exposes, the account rules fire for the accounts in trouble, and the
budget rules for the budgets in trouble.

The metrics are a real scrape: the watch's own collector over a board that a real poll of the
simulated exchange fills, made into text by ``prometheus_client`` and read back by its parser.
The exchange is set so that one account is in a margin call, one is being liquidated and one
answers every call with a 500. A budget in trouble (near its limit, refused, banned, shut) is
not something a short poll should meet, so the budget rules are also evaluated over two
synthesised scrapes, ten minutes apart, with the metrics' names and labels.
"""

from __future__ import annotations

import asyncio
import json
import operator
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from binance_pm import AccountStatus, AccountType, AsyncClient, Session
from binance_pm._cli.board import LIQUIDATION, Board, Row
from binance_pm._cli.metrics import BoardCollector
from binance_pm.testing import SimulatedExchange

EXAMPLES = Path(__file__).parent.parent / "examples"
RULES = EXAMPLES / "prometheus" / "alerts.yml"
DASHBOARD = EXAMPLES / "grafana" / "dashboard.json"

SELECTOR = re.compile(r"\b(binance_pm_[A-Za-z0-9_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
COMPARISON = re.compile(r"(==|!=|<=|>=|<|>)\s*(-?[0-9.]+)\s*$")
RANGE_FUNCTION = re.compile(r"(increase|rate)\((.+)\[(\d+)([smh])\]\)")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
LABEL_VALUES = re.compile(r"label_values\((\w+),\s*(\w+)\)")

#: The accounts each account rule must fire for (its ``expr``; ``for`` is Prometheus's).
FIRES_FOR = {
    "BinancePMUniMMRLow": {"margin-call", "liquidating"},
    "BinancePMUniMMRCritical": {"liquidating"},
    "BinancePMAccountLiquidating": {"liquidating"},
    "BinancePMAccountNotNormal": {"margin-call"},
    "BinancePMAccountFailing": {"broken"},
    "BinancePMAccountStale": {"broken"},
    "BinancePMBudgetNearLimit": set(),
    "BinancePMBudgetClosed": set(),
}

#: Budgets in a scrape and in one ten minutes before it, each in one kind of trouble or none:
#: name -> (used, limit, seconds shut, 429s before and now, 418s before and now).
BUDGETS = {
    "papi_ip": (5700, 6000, 0.0, (0, 0), (0, 0)),  # 95 % used
    "sapi_uid:ab…yz": (171_000, 180_000, 0.0, (0, 0), (0, 0)),  # 95 %: an account's own budget
    "api_ip": (5400, 6000, 0.0, (7, 7), (0, 0)),  # 90 %, not over it; 429s only long ago
    "sapi_ip": (1200, 12_000, 0.0, (1, 3), (0, 0)),  # two 429s in the ten minutes, reopened
    "fapi_ip": (0, 2400, 120.0, (0, 0), (0, 1)),  # a 418: banned, shut for two minutes
}
UID_BUDGET_ACCOUNT = "desk-1"

#: The budgets each budget rule must fire for, over those two scrapes.
BUDGET_RULE_FIRES_FOR = {
    "BinancePMBudgetNearLimit": {"papi_ip", "sapi_uid:ab…yz"},
    "BinancePMRateLimited": {"sapi_ip"},
    "BinancePMIPBanned": {"fapi_ip"},
    "BinancePMBudgetClosed": {"fapi_ip"},
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


# -- the metrics, as a scrape reads them ---------------------------------------------------------


async def scrape() -> list[Sample]:
    """Poll every kind of account of a simulated exchange until each has answered or failed,
    and read the watch's metrics of it."""
    async with SimulatedExchange(accounts=6, seed=2) as exchange:
        kinds = {t: [a for a in exchange.accounts if a.account_type is t] for t in AccountType}
        pm, pro, span = kinds[AccountType.PM_2], kinds[AccountType.PM_1], kinds[AccountType.PM_3]
        for account in exchange.accounts:
            exchange.set_uni_mmr(account.api_key, 5.0)
        exchange.set_uni_mmr(pro[0].api_key, 1.35)  # MARGIN_CALL
        exchange.set_uni_mmr(span[0].api_key, 0.7)  # FORCE_LIQUIDATION
        exchange.broken.add(pm[1].api_key)
        named = {
            "margin-call": (pro[0], "pm_pro_account"),
            "liquidating": (span[0], "pm_pro_span_account"),
            "broken": (pm[1], "pm_account"),
            "pm": (pm[0], "pm_account"),
            "pm-balances": (pm[0], "pm_balance"),  # the same key, its balances
            "pro": (pro[1], "pm_pro_account"),
            "span": (span[1], "pm_pro_span_account"),
        }
        async with Session(base_url=exchange.base_url, max_retries=0) as session:
            rows: dict[AsyncClient, Row] = {}
            jobs: dict[AsyncClient, str] = {}
            for name, (account, endpoint) in named.items():
                client = session.client(account.api_key, **account.credentials(), name=name)
                rows[client] = Row(name, endpoint)
                jobs[client] = endpoint
            # Stale after three periods of 5 s: only the broken account, whatever the machine.
            board = Board(rows, alert_mmr=1.5, every=5.0)
            with anyio.fail_after(20):
                async with session.poll(jobs, every=0.2) as updates:
                    async for update in updates:
                        board.add(update)
                        if all(r.at is not None or r.failing for r in rows.values()):
                            break
            registry = CollectorRegistry(auto_describe=False)
            registry.register(BoardCollector(board, session.governor))
            text = generate_latest(registry).decode()
    return [
        Sample(sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


@pytest.fixture(scope="module")
def exposed() -> list[Sample]:
    return asyncio.run(scrape())


def labels_of(samples: list[Sample]) -> dict[str, set[str]]:
    """Every exposed metric's name, with the labels its samples carry."""
    found: dict[str, set[str]] = {}
    for sample in samples:
        found.setdefault(sample.name, set()).update(sample.labels)
    return found


# -- what the files ask for ----------------------------------------------------------------------


def rules(group_name: str | None = None) -> list[dict[str, Any]]:
    """The rules of the file, or of its group named ``group_name``."""
    loaded = yaml.safe_load(RULES.read_text())
    return [
        rule
        for group in loaded["groups"]
        if group_name in (None, group["name"])
        for rule in group["rules"]
    ]


def rule_named(alert: str) -> dict[str, Any]:
    return next(rule for rule in rules() if rule["alert"] == alert)


def status_matcher(alert: str, op: str) -> set[str]:
    """The statuses the rule's ``status`` matcher with ``op`` (``=~``, ``!~``) lists."""
    expr = rule_named(alert)["expr"]
    found = [
        value
        for _, body in SELECTOR.findall(expr)
        for label, matcher_op, value in MATCHER.findall(body)
        if label == "status" and matcher_op == op
    ]
    assert len(found) == 1, expr
    return set(found[0].split("|"))


def dashboard_targets() -> list[tuple[str, list[str]]]:
    """Each panel query's ``expr``, with the labels its legend names."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (target["expr"], LEGEND_LABEL.findall(target.get("legendFormat", "")))
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def selectors(expr: str) -> list[tuple[str, list[str]]]:
    """The metrics an expression reads, each with the labels its matchers name."""
    return [
        (name, [m[0] for m in MATCHER.findall(body or "")]) for name, body in SELECTOR.findall(expr)
    ]


def problems(expr: str, exposed: dict[str, set[str]], used_labels: list[str]) -> list[str]:
    """What ``expr`` asks for that no scrape has: a metric, or a label that a matcher, a
    grouping or a template (``used_labels``) names."""
    read = selectors(expr)
    if not read:
        return [f"{expr!r} reads no binance_pm metric"]
    found = []
    carried: set[str] = set()
    for name, matched in read:
        if name not in exposed:
            found.append(f"{expr!r}: no metric {name}")
            continue
        carried |= exposed[name]
        found += [
            f"{expr!r}: {name} has no {label}" for label in matched if label not in exposed[name]
        ]
    grouped = [g.strip() for group in GROUPING.findall(expr) for g in group.split(",")]
    for label in [*grouped, *used_labels]:
        if label and label not in carried:
            found.append(f"{expr!r}: no metric it reads has {label}")
    return found


# -- the rules file ------------------------------------------------------------------------------


def test_the_rules_file_has_the_structure_of_a_prometheus_rule_file() -> None:
    loaded = yaml.safe_load(RULES.read_text())

    assert set(loaded) == {"groups"}
    assert loaded["groups"]
    for group in loaded["groups"]:
        assert set(group) == {"name", "rules"}, group.keys()
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))


def test_the_rules_watch_every_risk_the_metrics_tell() -> None:
    read = {name for rule in rules() for name, _ in selectors(rule["expr"])}

    assert read >= {
        "binance_pm_account_uni_mmr",  # low uniMMR
        "binance_pm_account_status",  # liquidation, not NORMAL
        "binance_pm_account_failing",
        "binance_pm_account_stale",
        "binance_pm_budget_used",  # near its limit
        "binance_pm_budget_limit",
        "binance_pm_budget_refusals_total",  # 429s and 418s
        "binance_pm_budget_closed_seconds",
        "binance_pm_updates_total",  # the watch itself
    }


def test_every_metric_and_label_the_rules_use_is_exposed(exposed: list[Sample]) -> None:
    metrics = labels_of(exposed)
    found = []
    for rule in rules():
        templates = " ".join(rule["annotations"].values())
        found += problems(rule["expr"], metrics, TEMPLATE_LABEL.findall(templates))

    assert found == []


@pytest.mark.parametrize("alert", sorted(FIRES_FOR))
def test_the_rule_fires_for_the_accounts_in_trouble_and_only_them(
    alert: str, exposed: list[Sample]
) -> None:
    rule = rule_named(alert)

    firing = evaluate(rule["expr"], exposed)

    assert {labels.get("account", labels.get("budget", "")) for labels in firing} == FIRES_FOR[
        alert
    ]


def test_the_liquidation_rule_pages_on_the_statuses_watch_exits_5_for() -> None:
    assert status_matcher("BinancePMAccountLiquidating", "=~") == LIQUIDATION


def test_the_not_normal_rule_leaves_out_exactly_the_liquidation_statuses() -> None:
    assert status_matcher("BinancePMAccountNotNormal", "!~") == LIQUIDATION


def test_each_status_but_normal_fires_exactly_one_of_the_two_status_rules() -> None:
    statuses = {status.value for status in AccountStatus}
    samples = [
        Sample("binance_pm_account_status", {"account": s, "type": "PM", "status": s}, 1.0)
        for s in statuses
    ]

    liquidating = evaluate(rule_named("BinancePMAccountLiquidating")["expr"], samples)
    not_normal = evaluate(rule_named("BinancePMAccountNotNormal")["expr"], samples)

    assert {labels["status"] for labels in liquidating} == LIQUIDATION
    assert {labels["status"] for labels in not_normal} == statuses - LIQUIDATION - {"NORMAL"}
    assert "REDUCE_ONLY" in {labels["status"] for labels in not_normal}


def test_every_budget_rule_has_budgets_it_must_fire_for() -> None:
    assert {rule["alert"] for rule in rules("binance_pm_budgets")} == set(BUDGET_RULE_FIRES_FOR)


@pytest.mark.parametrize("alert", sorted(BUDGET_RULE_FIRES_FOR))
def test_the_budget_rule_fires_for_the_budgets_in_trouble_and_only_them(alert: str) -> None:
    earlier, now = budget_scrape(0), budget_scrape(1)

    firing = evaluate(rule_named(alert)["expr"], now, earlier=earlier)

    assert {labels["budget"] for labels in firing} == BUDGET_RULE_FIRES_FOR[alert]


def test_the_budget_rules_name_an_accounts_own_budget_by_its_account() -> None:
    firing = evaluate(rule_named("BinancePMBudgetNearLimit")["expr"], budget_scrape(1))

    owned = [labels for labels in firing if labels["budget"].startswith("sapi_uid:")]
    assert [labels.get("account") for labels in owned] == [UID_BUDGET_ACCOUNT]


def test_the_watch_stuck_rule_fires_when_no_update_came_in_its_range_and_only_then() -> None:
    expr = rule_named("BinancePMWatchStuck")["expr"]

    def updates(total: float) -> list[Sample]:
        return [Sample("binance_pm_updates_total", {}, total)]

    assert evaluate(expr, updates(120), earlier=updates(120)) == [{}]
    assert evaluate(expr, updates(121), earlier=updates(120)) == []


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (apt-get install prometheus): .ci/run installs it"

    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr


# -- the dashboard -------------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_over_a_prometheus_variable() -> None:
    board = json.loads(DASHBOARD.read_text())

    assert board["title"]
    assert board["uid"]
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [target["refId"] for target in panel["targets"]]
        assert refs
        assert len(refs) == len(set(refs))


def test_the_dashboard_shows_what_it_says() -> None:
    read = {name for expr, _ in dashboard_targets() for name, _ in selectors(expr)}

    assert read >= {
        "binance_pm_account_uni_mmr",
        "binance_pm_account_equity_usd",
        "binance_pm_account_failing",
        "binance_pm_account_stale",
        "binance_pm_budget_used",
        "binance_pm_budget_limit",
        "binance_pm_budget_refusals_total",
    }


def test_every_metric_and_label_the_dashboard_uses_is_exposed(exposed: list[Sample]) -> None:
    metrics = labels_of(exposed)
    board = json.loads(DASHBOARD.read_text())
    found = []
    for expr, legend in dashboard_targets():
        found += problems(expr, metrics, legend)
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":  # label_values(METRIC, LABEL)
            query = LABEL_VALUES.fullmatch(variable["definition"])
            assert query is not None, variable["definition"]
            found += problems(query[1], metrics, [query[2]])

    assert found == []


def test_a_uid_budget_joins_the_account_metrics_by_its_account_label(
    exposed: list[Sample],
) -> None:
    accounts = {s.labels["account"] for s in exposed if s.name == "binance_pm_account_failing"}
    uid = [s for s in exposed if s.name == "binance_pm_budget_used" and "uid" in s.labels["budget"]]

    assert {s.labels.get("account") for s in uid} == {"margin-call", "pro"}  # pm_pro_account's
    assert {s.labels.get("account") for s in uid} <= accounts


# -- synthesised budget scrapes -----------------------------------------------------------------


def budget_scrape(moment: int) -> list[Sample]:
    """The budget metrics of :data:`BUDGETS` as a scrape reads them: ``moment`` 0 is the
    earlier scrape, 1 the later one (only the refusal counters differ)."""
    samples = []
    for name, (used, limit, shut, refused_429, refused_418) in BUDGETS.items():
        budget = {"budget": name}
        if name.startswith("sapi_uid:"):
            budget["account"] = UID_BUDGET_ACCOUNT
        samples += [
            Sample("binance_pm_budget_used", budget, used),
            Sample("binance_pm_budget_limit", budget, limit),
            Sample("binance_pm_budget_closed_seconds", budget, shut),
            Sample(
                "binance_pm_budget_refusals_total", {**budget, "status": "429"}, refused_429[moment]
            ),
            Sample(
                "binance_pm_budget_refusals_total", {**budget, "status": "418"}, refused_418[moment]
            ),
        ]
    return samples


# -- a small evaluator, for the rules' simple expressions ----------------------------------------


def evaluate(
    expr: str, samples: list[Sample], *, earlier: list[Sample] | None = None
) -> list[dict[str, str]]:
    """The series ``expr`` returns now, for the forms the threshold rules take:
    ``SELECTOR OP NUMBER``, ``SELECTOR / SELECTOR OP NUMBER`` (one-to-one, on equal label
    sets), and ``increase(SELECTOR[RANGE]) OP NUMBER`` or ``rate(…)``, over ``earlier``, a
    scrape at the range's start, and ``samples``, one at its end (with no ``earlier``, no
    series: one point tells no increase)."""
    compared = COMPARISON.search(expr)
    assert compared is not None, expr
    op, threshold = compared[1], float(compared[2])
    sides = expr[: compared.start()].split(" / ")
    assert len(sides) in (1, 2), expr
    values = [series(side.strip(), samples, earlier) for side in sides]
    result = values[0]
    if len(values) == 2:
        result = {k: v / values[1][k] for k, v in result.items() if values[1].get(k)}
    tests = {
        "==": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        ">": operator.gt,
        "<=": operator.le,
        ">=": operator.ge,
    }
    return [dict(key) for key, value in result.items() if tests[op](value, threshold)]


def series(
    side: str, samples: list[Sample], earlier: list[Sample] | None
) -> dict[tuple[tuple[str, str], ...], float]:
    """A selector's samples, or a range function's values over the two scrapes (a counter that
    went down was reset, and counts from zero)."""
    ranged = RANGE_FUNCTION.fullmatch(side)
    if ranged is None:
        assert SELECTOR.fullmatch(side), side
        return matching(side, samples)
    function, selector = ranged[1], ranged[2]
    assert SELECTOR.fullmatch(selector), side
    if earlier is None:
        return {}
    before, after = matching(selector, earlier), matching(selector, samples)
    increase = {
        key: value - before[key] if value >= before[key] else value
        for key, value in after.items()
        if key in before
    }
    if function == "increase":
        return increase
    seconds = int(ranged[3]) * UNIT_SECONDS[ranged[4]]
    return {key: value / seconds for key, value in increase.items()}


def matching(selector: str, samples: list[Sample]) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples a selector picks, by their labels; regular expressions fully anchored, and
    a missing label read as ``""``, as Prometheus does."""
    found = SELECTOR.fullmatch(selector)
    assert found is not None
    name, body = found[1], found[2] or ""
    picked = {}
    for sample in samples:
        if sample.name != name:
            continue
        ok = True
        for label, op, value in MATCHER.findall(body):
            have = sample.labels.get(label, "")
            hit = re.fullmatch(value, have) is not None if "~" in op else have == value
            ok = ok and (hit if op in ("=", "=~") else not hit)
        if ok:
            picked[tuple(sorted(sample.labels.items()))] = sample.value
    return picked

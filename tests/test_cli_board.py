"""What the watch board makes of updates: reasons, stale data, exit statuses, the order of rows."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from binance_pm import AuthError, TransportError
from binance_pm._cli.board import LIQUIDATION, Board, Row, reason
from binance_pm._config import TIMEOUT
from binance_pm._events import PMProAccountUpdate, RiskLevelChange
from binance_pm._models import AccountStatus, AccountType, PMAccount, PMBalance, PMProAccount
from binance_pm._updates import Update


class Client:
    """Stands in for an AsyncClient as a key of the board's rows."""

    name = "x"


def account(uni_mmr: str, status: AccountStatus = AccountStatus.NORMAL) -> PMProAccount:
    return PMProAccount(
        uni_mmr=Decimal(uni_mmr),
        account_equity=Decimal("1000.5"),
        actual_equity=Decimal("1000.5"),
        account_maint_margin=Decimal("0E-8"),
        account_status=status,
        account_type=AccountType.PM_1,
    )


def balance(asset: str, wallet: str) -> PMBalance:
    amount = Decimal(wallet)
    return PMBalance(
        asset=asset,
        total_wallet_balance=amount,
        cross_margin_borrowed=None,
        cross_margin_free=None,
        cross_margin_interest=None,
        cross_margin_locked=None,
        um_wallet_balance=None,
        um_unrealized_pnl=None,
        cm_wallet_balance=None,
        cm_unrealized_pnl=None,
        update_time=0,
    )


def board_of(*endpoints: str, every: float = 1.0) -> tuple[Board, list[Any]]:
    clients = [Client() for _ in endpoints]
    rows = {c: Row(f"acct-{n}", e) for n, (c, e) in enumerate(zip(clients, endpoints, strict=True))}
    return Board(rows, 1.5, every=every), clients  # type: ignore[arg-type]


def update(client: Any, endpoint: str, result: Any = None, error: Any = None, **kw: Any) -> Update:
    return Update(client, endpoint, result, error, kw.pop("at", time.time()), **kw)


REFUSED = AuthError(
    401, -2015, "Invalid API-key, IP, or permissions for action.", endpoint="GET /x"
)
NO_LINE = TransportError(
    "cannot connect to h:1: Connection refused", endpoint="GET /x", api_key="ab…yz"
)


def test_reason_is_the_exchanges_code_and_message_or_what_the_connection_did() -> None:
    assert reason(REFUSED) == "-2015 Invalid API-key, IP, or permissions for action."
    assert reason(NO_LINE) == "cannot connect to h:1: Connection refused"


def test_an_error_after_a_good_answer_keeps_the_figures_and_shows_stale_once_old() -> None:
    board, (client,) = board_of("pm_pro_account")
    row = board.add(update(client, "pm_pro_account", account("2.5"), at=100.0))
    assert row.state(100.5) == "NORMAL"
    board.add(update(client, "pm_pro_account", error=NO_LINE, at=101.0))
    assert row.failing
    assert row.uni_mmr == Decimal("2.5")  # the last known figures stay, marked
    assert row.state(102.0) == "NORMAL"  # two periods: not yet stale
    assert row.state(103.5) == "STALE, was NORMAL"
    board.add(update(client, "pm_pro_account", error=REFUSED, at=104.0, final=True))
    assert row.state(104.0) == "DROPPED"
    assert board.failure_text(row) == (
        "acct-0 (PM Pro) dropped: -2015 Invalid API-key, IP, or permissions for action."
    )


def test_exit_status_says_whether_monitoring_worked() -> None:
    board, clients = board_of("pm_pro_account", "pm_balance")
    assert board.exit_status() == 0  # nothing is due yet: a short run is not a failure
    assert len(board.waiting()) == 2
    board.started -= 3.5 * board.every + TIMEOUT  # three periods and a call's deadline, silent
    assert board.exit_status() == 4
    board.add(update(clients[0], "pm_pro_account", account("3")))
    assert board.exit_status() == 3  # one silent
    board.add(update(clients[1], "pm_balance", [balance("USDT", "5")]))
    assert board.exit_status() == 0
    board.add(update(clients[1], "pm_balance", error=NO_LINE))
    assert board.exit_status() == 3
    board.add(update(clients[0], "pm_pro_account", error=NO_LINE))
    assert board.exit_status() == 4
    board.add(update(clients[0], "pm_pro_account", account("3")))
    assert board.exit_status() == 3


def test_a_short_screen_shows_every_product_after_the_accounts_in_trouble() -> None:
    endpoints = ["pm_balance"] * 20 + ["pm_pro_account"] * 20 + ["pm_pro_span_account"] * 5
    board, clients = board_of(*endpoints)
    for n, (client, endpoint) in enumerate(zip(clients, endpoints, strict=True)):
        if endpoint == "pm_balance":
            result: Any = [balance("ADA", "160000"), balance("USDT", str(90_000 + n))]
        else:
            result = account(str(2 + n / 100))
        board.add(update(client, endpoint, result))
    board.add(update(clients[30], "pm_pro_account", account("1.2")))
    board.add(update(clients[41], "pm_pro_span_account", account("9", AccountStatus.MARGIN_CALL)))
    board.add(update(clients[3], "pm_balance", error=NO_LINE))
    first = board.ordered()[:9]
    assert [r.name for r in first[:3]] == ["acct-41", "acct-30", "acct-3"]
    assert {r.kind for r in first[3:6]} == {"PM", "PM Pro", "PM Pro SPAN"}
    assert {r.kind for r in first[6:9]} == {"PM", "PM Pro", "PM Pro SPAN"}
    pm_row = next(r for r in first[3:] if r.kind == "PM")
    assert pm_row.equity_text().endswith(" USDT wallet")  # labelled for what it is
    assert [r.name for r in board.alerts()] == ["acct-30", "acct-41"]


@pytest.mark.parametrize("endpoint", ["pm_pro_account", "pm_balance"])
def test_a_json_record_keeps_the_exchanges_digits(endpoint: str) -> None:
    board, (client,) = board_of(endpoint)
    result: Any = (
        account("1.23000000") if endpoint == "pm_pro_account" else [balance("BTC", "0E-8")]
    )
    up = update(client, endpoint, result, at=0.0)
    record = board.record(up, board.add(up))
    assert record["time"] == "1970-01-01T00:00:00.000+00:00"
    if endpoint == "pm_balance":
        assert record["balances"] == {"BTC": "0.00000000"}
    else:
        assert record["uni_mmr"] == "1.23000000"
        assert record["maint_margin"] == "0.00000000"
        assert record["alert"] is True


def test_a_narrow_column_shows_what_went_wrong_first() -> None:
    from binance_pm._cli.views import brief

    long = (
        "cannot connect to 127.0.0.1:9: Connection refused (while checking the exchange clock, "
        "GET /api/v3/time)"
    )
    assert brief(long) == "Connection refused: 127.0.0.1:9 (clock check)"
    assert brief("cannot connect to h.invalid:80: Name or service not known") == (
        "Name or service not known: h.invalid:80"
    )
    assert brief("-1022 Signature for this request is not valid.") == (
        "-1022 Signature for this request is not valid."
    )


def test_exit_status_says_an_account_is_being_liquidated() -> None:
    board, (client,) = board_of("pm_pro_account")
    board.add(update(client, "pm_pro_account", account("1.01", AccountStatus.FORCE_LIQUIDATION)))
    assert board.exit_status() == 5
    assert any(line.startswith("in liquidation: 1: acct-0") for line in board.summary())
    board.add(update(client, "pm_pro_account", account("1.2", AccountStatus.MARGIN_CALL)))
    assert board.exit_status() == 0


def test_a_pm_accounts_pushed_risk_level_change_merges_with_its_rest_figures() -> None:
    board, (client,) = board_of("pm_account")
    answered = PMAccount(
        uni_mmr=Decimal("2.5"),
        account_equity=Decimal("1000"),
        actual_equity=Decimal("1000"),
        account_maint_margin=Decimal("400"),
        account_status=AccountStatus.NORMAL,
    )
    row = board.add(update(client, "pm_account", answered, at=100.0))
    assert (row.kind, row.uni_mmr, row.status) == ("PM", Decimal("2.5"), "NORMAL")
    pushed = RiskLevelChange(
        event="riskLevelChange",
        uni_mmr=Decimal("1.19"),
        level=AccountStatus.MARGIN_CALL,
        account_equity=Decimal("900"),
        maint_margin=Decimal("756.3"),
    )
    row = board.add(update(client, "pm_account", None, source="stream", event=pushed, at=101.0))
    assert (row.uni_mmr, row.status, row.equity) == (Decimal("1.19"), "MARGIN_CALL", Decimal("900"))
    assert row.maint_margin == Decimal("756.3")
    assert row.at == 101.0
    assert board.alerting(row)


def test_a_stream_that_has_not_pushed_leaves_the_rest_period() -> None:
    board, (client,) = board_of("pm_pro_account")
    row = board.rows[client]
    row.every, row.pushes_every = 60.0, 5.0  # reconciled each minute, pushed every 5 s
    board.add(update(client, "pm_pro_account", account("2.5"), at=100.0))
    assert not row.stale(100.0 + 20)  # its stream has not pushed yet: REST is what arrives
    pushed = PMProAccountUpdate(event="PM_PRO_ACCOUNT_UPDATE", uni_mmr=Decimal("2.4"))
    board.add(update(client, "pm_pro_account", None, source="stream", event=pushed, at=130.0))
    assert not row.stale(130.0 + 14)
    assert row.stale(130.0 + 16)  # three pushes missed while the stream is up
    board.add(update(client, "pm_pro_account", None, source="stream", error=NO_LINE, at=131.0))
    assert not row.stale(130.0 + 16)  # the stream is down: the reconciliation is what comes


def test_bankrupt_is_a_liquidation_status_and_wins_over_failing_accounts() -> None:
    board, (liquidated, failing) = board_of("pm_pro_account", "pm_pro_account")
    board.add(update(liquidated, "pm_pro_account", account("0.9", AccountStatus.BANKRUPTED)))
    board.add(update(failing, "pm_pro_account", error=NO_LINE))
    assert board.exit_status() == 5
    assert "BANKRUPTED" in LIQUIDATION

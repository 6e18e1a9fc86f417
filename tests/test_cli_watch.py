"""``binance-pm watch`` as a risk desk runs it: failures named with their reasons, exit statuses
that say monitoring failed, JSON lines, Prometheus metrics, and stale rows on a real terminal."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from binance_pm import AccountStatus

from .commands import keyless_env, run, secrets_of, toml_for
from .served import Served, serve, stats

# Four accounts: every product and both key types, and none of the simulator's accounts that
# drift into liquidation (acct-0004, every tenth from the fifth), which would end watch with 5.
pytestmark = pytest.mark.served("--accounts", "4", "--seed", "7")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def watch(
    path: Path, base_url: str, *extra: str, seconds: float = 2.0
) -> subprocess.CompletedProcess[str]:
    return run(
        "watch",
        "--accounts",
        str(path),
        "--every",
        "0.4",
        "--seconds",
        str(seconds),
        "--base-url",
        base_url,
        *extra,
        env=keyless_env(),
    )


def names_of(accounts: list[dict[str, str]]) -> list[str]:
    return [account["name"] for account in accounts]


def test_no_network_exits_4_naming_every_account_and_the_reason(
    served: Served, tmp_path: Path
) -> None:
    accounts = served.accounts
    port = closed_port()
    done = watch(toml_for(accounts, tmp_path), f"http://127.0.0.1:{port}")
    assert done.returncode == 4, done.stdout + done.stderr
    summary = done.stdout.split("\ncalls: ", 1)[1]
    failing = int(re.search(r"^failing: (\d+) of \d+ accounts$", summary, re.M)[1])  # type: ignore[index]
    waiting = re.search(r"^not yet polled: (\d+) ", summary, re.M)
    assert failing + (int(waiting[1]) if waiting else 0) == len(accounts), summary
    reasons = 0
    for name in names_of(accounts):
        # Each is named, with why: the connection refused (the clock check named as the step
        # that failed), or no answer yet for an account whose first call is still trying.
        line = re.search(rf"^  {name} \(PM[^)]*\) (.*)$", summary, re.M)
        assert line, summary
        if line[1] != "no answer yet":
            reasons += 1
            assert re.fullmatch(
                rf"failing: cannot connect to 127\.0\.0\.1:{port}: Connection refused "
                r"\(while checking the exchange clock, GET /api/v3/time\)",
                line[1],
            ), line[1]
    assert reasons >= 1
    # Every periodic line names the failing accounts too.
    lines = [line for line in done.stdout.splitlines() if line.startswith("t=")]
    assert lines
    assert all("failing: acct-" in line for line in lines)
    assert "ssl:default" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_refused_keys_exit_3_and_name_the_accounts_and_the_exchange_codes(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    good = [a for a in accounts if "secret" in a][:2]
    other = next(a for a in accounts if a not in good)
    wrong_secret = {k: v for k, v in other.items() if k != "private_key"}
    wrong_secret.update(name="wrong-secret", secret="0" * 64)
    unknown_key = dict(good[1], name="unknown-key", api_key="Z" * 64)
    done = watch(toml_for([*good, wrong_secret, unknown_key], tmp_path), base_url)
    assert done.returncode == 3, done.stdout + done.stderr
    summary = done.stdout.split("\ncalls: ", 1)[1]
    assert "failing: 2 of 4 accounts" in summary
    assert re.search(r"^  wrong-secret \(.*\) (failing|dropped): -1022 Signature", summary, re.M)
    assert re.search(r"^  unknown-key \(.*\) dropped: -2015 Invalid API-key", summary, re.M), (
        summary
    )
    for account in good:
        assert f"  {account['name']} " not in summary  # the good ones are not listed
    for secret in secrets_of(good):
        assert secret not in done.stdout + done.stderr


def test_piped_lines_name_the_accounts_below_the_threshold(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    risky = accounts  # every product tells its uniMMR (PM through pm_account)
    assert {a["account_type"] for a in risky} == {"PM_1", "PM_2", "PM_3"}
    done = watch(toml_for(accounts, tmp_path), base_url, "--alert-mmr", "1000000")
    assert done.returncode == 0, done.stdout + done.stderr
    last = [line for line in done.stdout.splitlines() if line.startswith("t=")][-1]
    assert f"alerts={len(risky)}" in last
    assert "| alerts: " in last
    assert re.search(r"acct-\d+ \(PM(?: Pro)?(?: SPAN)?\) uniMMR \d+\.\d{3}", last)
    summary = done.stdout.split("\ncalls: ", 1)[1]
    for account in risky:
        assert re.search(rf"^  alert {account['name']} \(PM", summary, re.M), summary


def test_jsonl_is_one_object_per_update_with_figures_as_decimal_strings(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    done = watch(toml_for(accounts, tmp_path), base_url, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) >= 2 * len(accounts)
    assert {r["account"] for r in records} == set(names_of(accounts))
    kinds = {a["name"]: a["account_type"] for a in accounts}
    for record in records:
        assert record["ok"] is True
        assert record["error"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["time"])
        if kinds[record["account"]] == "PM_2":
            assert record["type"] == "PM"
            assert record["endpoint"] == "pm_account"  # a PM account's uniMMR
        else:
            assert record["type"].startswith("PM Pro")
        # Any status the exchange has: the accounts drift, and on a busy machine the run lasts
        # long enough for one to reach a margin call.
        assert record["status"] in {s.value for s in AccountStatus}
        for field in ("uni_mmr", "equity", "maint_margin"):
            assert isinstance(record[field], str)
            assert "E" not in record[field]
            Decimal(record[field])
    # The summary is on stderr, so that stdout is nothing but JSON lines.
    assert "calls: " in done.stderr


def test_jsonl_names_the_failure_of_each_update(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[account]]\nname = "desk-1"\napi_key = "k1"\nsecret = "s1"\nproduct = "PM Pro"\n'
    )
    done = watch(path, f"http://127.0.0.1:{closed_port()}", "--format", "jsonl", seconds=1.2)
    assert done.returncode == 4
    first = json.loads(done.stdout.splitlines()[0])
    assert first["account"] == "desk-1"
    assert first["ok"] is False
    assert first["error"]["kind"] == "TransportError"
    assert first["error"]["code"] is None
    assert "Connection refused" in first["error"]["message"]


def test_a_closed_pipe_ends_watch_quietly(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    path = toml_for(accounts, tmp_path)
    for form in ("jsonl", "plain"):
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "binance_pm",
                "watch",
                "--accounts",
                str(path),
                "--every",
                "0.2",
                "--seconds",
                "20",
                "--base-url",
                base_url,
                "--format",
                form,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=keyless_env(),
        ) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            assert process.stdout.readline()
            process.stdout.close()  # as `head -1` does
            status = process.wait(timeout=15)
            errors = process.stderr.read()
        assert status == 0, errors
        assert errors == ""


def test_metrics_are_served_and_parse_with_prometheus_clients_own_parser(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    path = toml_for(accounts, tmp_path)
    command = [sys.executable, "-m", "binance_pm", "watch", "--accounts", str(path)]
    command += ["--every", "0.3", "--seconds", "30", "--base-url", base_url]
    with subprocess.Popen(
        [*command, "--metrics-port", "0", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=keyless_env(),
    ) as process:
        try:
            assert process.stderr is not None
            assert process.stdout is not None
            announced = process.stderr.readline()
            found = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", announced)
            assert found, announced
            for _ in range(2 * len(accounts)):  # every account has answered at least once
                assert process.stdout.readline()
            answer = httpx.get(found[1], timeout=10)
        finally:
            process.terminate()
            process.communicate(timeout=15)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    samples = {
        name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for name, family in families.items()
    }
    for account in accounts:
        who = (("account", account["name"]),)
        kind = "PM" if account["account_type"] == "PM_2" else "PM Pro"
        if account["account_type"] == "PM_3":
            kind = "PM Pro SPAN"
        key = tuple(sorted((*who, ("type", kind))))
        assert samples["binance_pm_account_failing"][key] == 0
        assert samples["binance_pm_account_stale"][key] == 0
        assert 0 <= samples["binance_pm_account_data_age_seconds"][key] < 30
        assert samples["binance_pm_account_failures"][key] == 0
        assert samples["binance_pm_account_uni_mmr"][key] > 0  # every product, PM too
        assert key in samples["binance_pm_account_equity_usd"]
        assert key in samples["binance_pm_account_maint_margin_usd"]
        statuses = [
            dict(k)["status"]
            for k, v in samples["binance_pm_account_status"].items()
            if dict(k)["account"] == account["name"] and v == 1
        ]
        assert len(statuses) == 1, statuses
    assert samples["binance_pm_budget_limit"][(("budget", "papi_ip"),)] > 0
    assert samples["binance_pm_budget_refusals"][(("budget", "papi_ip"), ("status", "429"))] == 0
    assert samples["binance_pm_budget_refusals"][(("budget", "sapi_ip"), ("status", "418"))] == 0
    assert samples["binance_pm_updates"][()] >= len(accounts)


def test_a_metrics_port_in_use_is_one_line_and_exit_2(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = watch(toml_for(accounts, tmp_path), base_url, "--metrics-port", str(port))
    assert done.returncode == 2
    assert f"--metrics-port {port}:" in done.stderr
    assert "Traceback" not in done.stderr


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout


@contextmanager
def on_terminal(command: str, columns: int, lines: int) -> Iterator[Callable[[], str]]:
    """``command`` on a terminal of its own (tmux) of ``columns`` × ``lines``; yields what the
    screen shows now, as a function; the terminal and the command end with the block."""
    assert shutil.which("tmux"), "tmux is needed (apt-get install tmux): .ci/run installs it"
    session = f"binance-pm-test-{time.monotonic_ns()}"
    size = ["-x", str(columns), "-y", str(lines)]
    tmux("-L", session, "new-session", "-d", "-s", session, *size, command)
    try:
        yield lambda: tmux("-L", session, "capture-pane", "-p", "-t", session)
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, timeout=10)


def test_on_a_terminal_a_row_whose_exchange_went_away_reads_stale_with_its_reason(
    tmp_path: Path,
) -> None:
    with serve("--accounts", "3", "--seed", "7") as (server, base_url, accounts):
        path = toml_for(accounts, tmp_path)
        command = (
            f"env -u COLUMNS -u LINES {sys.executable} -m binance_pm watch --accounts {path} "
            f"--every 0.3 --base-url {base_url} --seconds 60"
        )
        with on_terminal(command, 160, 30) as screen:
            deadline = time.monotonic() + 30

            def rows_of(shown: str) -> list[str]:
                return [line for line in shown.splitlines() if re.match(r"│ ?acct-", line)]

            # Every account's row has its figures.
            while sum(" USD" in row or "wallet" in row for row in rows_of(screen())) < len(
                accounts
            ):
                assert time.monotonic() < deadline, screen()
                time.sleep(0.2)
            server.kill()  # the exchange goes away
            server.wait(timeout=10)
            deadline = time.monotonic() + 30
            while True:
                shown = screen()
                rows = rows_of(shown)
                if len(rows) == len(accounts) and all("STALE" in row for row in rows):
                    break
                assert time.monotonic() < deadline, shown
                time.sleep(0.2)
            for row in rows:
                assert "Connection refused" in row or "server closed" in row, shown
            (tmp_path / "screen.txt").write_text(shown)


def test_watch_stream_merges_pushed_figures_into_the_lines(tmp_path: Path) -> None:
    with serve("--accounts", "4", "--seed", "7", "--push-every", "0.3") as (_, base_url, accounts):
        done = watch(
            toml_for(accounts, tmp_path), base_url, "--stream", "--format", "jsonl", seconds=2.5
        )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    pushed = [r for r in records if r["source"] == "stream"]
    rest = [r for r in records if r["source"] == "rest"]
    pro = {a["name"] for a in accounts if a["account_type"] != "PM_2"}
    assert {r["account"] for r in pushed} == pro  # every PM Pro account's figures pushed
    assert all(r["event"] == "PM_PRO_ACCOUNT_UPDATE" for r in pushed)
    assert all(Decimal(r["uni_mmr"]) > 0 for r in pushed)
    # REST once per account, twice if its stream connected after its first answer (that
    # connection's gap is filled): the reconciliation is a minute away.
    counts = Counter(r["account"] for r in rest)
    assert set(counts) == {a["name"] for a in accounts}
    assert max(counts.values()) <= 2, counts


@pytest.mark.parametrize(
    "sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["from a terminal", "as a background job"]
)
def test_sigterm_ends_watch_stream_with_its_summary_and_every_key_closed(
    tmp_path: Path, sigint: signal.Handlers
) -> None:
    # A shell starts a command in the background with SIGINT ignored; SIGTERM must still work.
    with serve("--accounts", "4", "--seed", "7", "--push-every", "0.3") as (_, base_url, accounts):
        with subprocess.Popen(
            [sys.executable, "-m", "binance_pm", "watch", "--accounts",
             str(toml_for(accounts, tmp_path)), "--base-url", base_url, "--stream",
             "--format", "jsonl", "--every", "0.4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=keyless_env(),
            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
        ) as process:  # fmt: skip
            assert process.stdout is not None
            pushed = 0
            for line in process.stdout:  # until every PM Pro stream has pushed
                pushed += json.loads(line)["source"] == "stream"
                if pushed >= 6:
                    break
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            _, err = process.communicate(timeout=10)
            took = time.monotonic() - started
        counts = stats(base_url)["by_endpoint"]
    assert took < 2.0
    assert process.returncode == 130  # the documented status of an interruption
    assert "calls: " in err  # the summary
    opened = counts.get("pm_listen_key_open", 0) + counts.get("pm_pro_listen_key_open", 0)
    closed = counts.get("pm_listen_key_close", 0) + counts.get("pm_pro_listen_key_close", 0)
    assert opened >= 4
    assert closed == len(accounts)


@pytest.mark.parametrize("columns", [60, 80])
def test_on_a_narrow_terminal_names_uni_mmr_status_and_reasons_stay_whole(
    columns: int, served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    unknown_key = dict(next(a for a in accounts if "secret" in a), name="unknown-key")
    unknown_key["api_key"] = "Z" * 64
    path = toml_for([*accounts, unknown_key], tmp_path)
    command = (
        f"env -u COLUMNS -u LINES {sys.executable} -m binance_pm watch --accounts {path} "
        f"--every 0.3 --base-url {base_url} --seconds 60"
    )
    with on_terminal(command, columns, 40) as screen:
        deadline = time.monotonic() + 30
        while True:
            shown = screen()
            if "DROPPED" in shown and shown.count(" NORMAL") >= 3:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        (tmp_path / "screen.txt").write_text(shown)
        assert "…" not in shown
        lines = shown.splitlines()
        for account in accounts:  # each name whole, with its uniMMR in full (digits.2)
            row = next((line for line in lines if f" {account['name']} " in line), None)
            assert row is not None, shown
            assert re.search(rf"{account['name']} +│ +\d+\.\d\d │ [A-Z_]+ ", row), row
        # The dropped row's reason whole: in its column, wrapped over lines, or (when the
        # terminal is too narrow for the column) below the table.
        in_column = " ".join(
            cell.strip() for line in lines for cell in line.split("│")[-2:-1] if cell.strip()
        )
        below = " ".join(line.strip() for line in lines if not line.startswith(("│", "┃")))
        reason = "-2015 Invalid API-key, IP, or permissions for action."
        assert reason in in_column or f"unknown-key (PM) dropped: {reason}" in below, shown


def test_on_a_dumb_terminal_watch_prints_plain_lines_as_it_goes(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    path = toml_for(accounts, tmp_path)
    command = (
        f"env TERM=dumb {sys.executable} -m binance_pm watch --accounts {path} "
        f"--every 0.3 --base-url {base_url} --seconds 60"
    )
    with on_terminal(command, 100, 20) as screen:
        deadline = time.monotonic() + 30
        while "t=" not in (shown := screen()):
            assert time.monotonic() < deadline, shown  # not a blank screen until the end
            time.sleep(0.2)
        assert re.search(r"^t=\d+\.\ds calls=\d+", shown, re.M), shown


def test_accounts_without_product_or_endpoint_are_asked_their_product(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    path = toml_for(accounts, tmp_path)
    path.write_text(re.sub(r'(?m)^endpoint = ".*"\n', "", path.read_text()))
    # And a PM account's key listed for a PM Pro endpoint.
    wrong = dict(next(a for a in accounts if a["account_type"] == "PM_2"), name="pm-as-pro")
    (tmp_path / "wrong").mkdir()
    text = toml_for([wrong], tmp_path / "wrong").read_text()
    text = text.replace('endpoint = "pm_account"', 'endpoint = "pm_pro_account"')
    text = text.replace('private_key_file = "', 'private_key_file = "wrong/')
    path.write_text(path.read_text() + "\n" + text)
    done = watch(path, base_url, "--format", "jsonl")
    assert done.returncode == 3, done.stderr
    assert f"asking the exchange the product of {len(accounts)} accounts" in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = {a["name"]: a["account_type"] for a in accounts}
    expected = {"PM_1": "pm_pro_account", "PM_2": "pm_account", "PM_3": "pm_pro_span_account"}
    for record in records:
        if record["account"] in kinds:
            assert record["ok"], record
            assert record["endpoint"] == expected[kinds[record["account"]]]
    assert {r["account"] for r in records} == {*kinds, "pm-as-pro"}
    refused = next(r for r in records if r["account"] == "pm-as-pro")
    assert refused["error"]["code"] == -2015
    assert refused["error"]["hint"].startswith("pm_pro_account answers PM Pro and PM Pro SPAN")
    # A PM key on a PM Pro endpoint: the summary says what the -2015 may mean.
    assert re.search(
        r"pm-as-pro \(PM Pro\) dropped: -2015 .*\(pm_pro_account answers PM Pro and PM Pro SPAN "
        r"accounts only: .*PM: pm_account\(\)",
        done.stderr,
    ), done.stderr


def test_an_account_whose_product_cannot_be_told_is_shown_dropped_not_guessed(
    served: Served, tmp_path: Path
) -> None:
    path = toml_for(served.accounts, tmp_path)
    path.write_text(re.sub(r'(?m)^endpoint = ".*"\n', "", path.read_text()))
    done = watch(path, f"http://127.0.0.1:{closed_port()}")
    assert done.returncode == 4, done.stdout + done.stderr
    as_jsonl = watch(path, f"http://127.0.0.1:{closed_port()}", "--format", "jsonl")
    records = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert {r["account"] for r in records} == {a["name"] for a in served.accounts}
    assert all(r["final"] and r["error"]["kind"] == "TransportError" for r in records)
    for account in served.accounts:
        assert f"binance-pm: {account['name']}: cannot tell its product (" in done.stderr
        assert re.search(
            rf"^  {account['name']} \(product\?\) dropped: cannot connect", done.stdout, re.M
        ), done.stdout
    assert "Traceback" not in done.stderr


def test_watch_sends_from_its_source_address_within_the_budgets_it_is_given(
    tmp_path: Path,
) -> None:
    with serve("--accounts", "4", "--seed", "7") as alone:  # nobody else's connections
        _, base_url, accounts = alone
        pm = [a for a in accounts if a["account_type"] == "PM_2"]
        assert pm
        done, seen = _watch_from(tmp_path, base_url, pm), stats(base_url)
    assert done.returncode == 0, done.stderr
    assert "127.0.0.2" in seen["client_ips"]  # (and 127.0.0.1: the look at the stats)
    ip_budgets = {b for b in seen["weight_by_window"] if not b.startswith("uid:")}
    assert ip_budgets == {"api_ip@127.0.0.2", "papi_ip@127.0.0.2"}  # the clock's, the calls'
    used = sum(seen["weight_by_window"]["papi_ip@127.0.0.2"].values())
    # At most the budget in each of the two windows of --seconds 2, and one more for a start
    # that straddles them; 2 accounts every 0.4 s would ask for about 400.
    assert 0 < used <= 300, used
    assert "429" not in seen["by_status"]


def _watch_from(
    tmp_path: Path, base_url: str, accounts: list[dict[str, str]]
) -> subprocess.CompletedProcess[str]:
    return watch(
        toml_for(accounts, tmp_path),
        base_url,
        "--source-address",
        "127.0.0.2",
        "--window",
        "2",
        "--papi-ip",
        "100",  # five account calls in 2 s: fewer than --every asks of two accounts
        "--format",
        "jsonl",
    )


def test_a_source_address_that_is_not_one_is_refused_at_once(
    served: Served, tmp_path: Path
) -> None:
    done = watch(toml_for(served.accounts, tmp_path), served.base_url, "--source-address", "nope")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--source-address: source_address must be an IP address, not 'nope'" in done.stderr
    assert "Traceback" not in done.stderr

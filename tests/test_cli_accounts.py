"""Every mistake in ``watch``'s accounts file is one line on stderr, naming the file, the
account and the key, with exit status 2: run as a user runs it, in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands import keyless_env, run

GOOD = '[[account]]\nname = "desk-1"\napi_key = "k1"\nsecret = "s3cr3t-value"\n'

MISTAKES = {
    "unknown key": (
        GOOD + 'endpiont = "pm_balance"\n',
        "desk-1: unknown key 'endpiont'; the keys are name, api_key, secret",
    ),
    "duplicate name": (
        GOOD + GOOD.replace('"k1"', '"k2"'),
        "account 'desk-1' is listed twice",
    ),
    "duplicate key and endpoint": (
        GOOD + GOOD.replace("desk-1", "desk-2"),
        "desk-2: the same api_key and endpoint as an account above",
    ),
    "secret and key file": (
        GOOD + 'private_key_file = "desk.pem"\n',
        "desk-1: give secret or private_key_file, not both",
    ),
    "api_key not a string": (
        GOOD.replace('api_key = "k1"', "api_key = 12345"),
        "desk-1: api_key must be a string, not int",
    ),
    "missing key file": (
        '[[account]]\nname = "desk-1"\napi_key = "k1"\nprivate_key_file = "nowhere.pem"\n',
        "desk-1: cannot read private_key_file {dir}/nowhere.pem: No such file or directory",
    ),
    "unknown table": (
        "[accounts]\n" + 'name = "x"\n\n' + GOOD,
        "unknown table or key 'accounts'; only [[account]] tables",
    ),
    "unknown endpoint": (
        GOOD + 'endpoint = "pm_balances"\n',
        "desk-1: endpoint must be one of pm_balance, pm_account, pm_pro_balance, pm_pro_account",
    ),
    "no keys": (
        '[[account]]\nname = "desk-1"\napi_key = "k1"\n',
        "desk-1: neither secret nor private_key_file is given",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_is_one_line_naming_file_account_and_key(mistake: str, tmp_path: Path) -> None:
    text, expected = MISTAKES[mistake]
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    done = run("watch", "--accounts", str(path), "--seconds", "1", env=keyless_env())
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == f"binance-pm: {path}: {expected.format(dir=tmp_path)}" or (
        lines[0].startswith(f"binance-pm: {path}: ") and expected.format(dir=tmp_path) in lines[0]
    ), lines[0]
    assert "s3cr3t-value" not in done.stderr  # no secret in the message

"""The README as a front page: short, its Quickstart commands the ones CI runs, its example a
program that runs as written, its links alive, and every install from a checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")

QUICKSTART_1 = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && "
    "pip install -e '.[cli]' && binance-pm demo"
)
QUICKSTART_2 = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && "
    "pip install -e '.[test]' && python -m pytest"
)


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_a_front_page_of_at_most_250_lines() -> None:
    assert len(README.splitlines()) <= 250


def test_the_quickstart_commands_are_the_two_documented_ones() -> None:
    commands = [line for line in section("Quickstart").splitlines() if line.startswith("python3")]

    assert commands == [QUICKSTART_1, QUICKSTART_2]


def test_ci_runs_the_quickstarts_second_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()

    assert QUICKSTART_2 in ci


def test_the_readmes_example_runs_as_written() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", section("Example"), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1

    done = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert done.returncode == 0, done.stderr
    assert "USDT wallet" in done.stdout
    assert "NORMAL" in done.stdout or "MARGIN_CALL" in done.stdout


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if "://" not in link]
    assert relative
    assert [link for link in relative if not (ROOT / link).exists()] == []


def test_every_install_in_the_readme_and_the_docs_is_from_a_checkout() -> None:
    # The package is on no index: it is installed editable from a checkout (``-e``); the only
    # other install is pip's own upgrade.
    pages = [README, *(page.read_text("utf-8") for page in (ROOT / "docs").rglob("*.md"))]
    first_arguments = [arg for text in pages for arg in re.findall(r"pip install (\S+)", text)]

    assert "-e" in first_arguments
    assert set(first_arguments) <= {"-e", "-U"}

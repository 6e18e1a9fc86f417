"""The pytest fixture for the simulated exchange that the docs show ("Test your bot with the
simulator", ``docs/how-to/testing.md``), exactly as shown there, in use: here (in this
project's ``asyncio_mode = "auto"``), and, as the page shows it, in a pytest of its own in
pytest-asyncio's default strict mode, as a new project has it. A test checks that the page and
this file hold the same text, so the two cannot drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from binance_pm import AccountType, Session
from binance_pm.testing import SimulatedExchange

PAGE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "testing.md"


# --- docs/how-to/testing.md: "A pytest fixture" ------------------------------------------
@pytest_asyncio.fixture
async def exchange() -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(accounts=6, window=1.0, seed=1) as ex:
        yield ex


@pytest_asyncio.fixture
async def session(exchange: SimulatedExchange) -> AsyncIterator[Session]:
    async with Session(base_url=exchange.base_url) as s:
        yield s


@pytest.mark.asyncio
async def test_my_risk_check(exchange: SimulatedExchange, session: Session) -> None:
    pro = [a for a in exchange.accounts if a.account_type is AccountType.PM_1]
    clients = [session.client(a.api_key, **a.credentials()) for a in pro]

    for client in clients:
        info = await client.pm_pro_account()
        assert info.uni_mmr is not None

    assert exchange.stats.by_status[200] == len(clients) + session.clock.samples


# --- end of the excerpt -------------------------------------------------------------------


def shown_on_the_page() -> str:
    """The page's fixture: the Python block that holds ``test_my_risk_check``."""
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text("utf-8"), re.S | re.M)
    found = [block for block in blocks if "async def test_my_risk_check" in block]
    assert len(found) == 1
    return str(found[0])


def test_the_page_shows_this_files_fixture_verbatim() -> None:
    excerpt = Path(__file__).read_text("utf-8").split("# --- docs/")[1].split("# --- end")[0]
    excerpt = excerpt.split("\n", 1)[1].strip()  # without the marker line

    assert excerpt in shown_on_the_page()


def test_the_pages_fixture_works_in_pytest_asyncios_strict_mode(tmp_path: Path) -> None:
    # A new project: no asyncio_mode setting (strict), none of this project's conftest.
    test_file = tmp_path / "test_example.py"
    test_file.write_text(shown_on_the_page())
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout

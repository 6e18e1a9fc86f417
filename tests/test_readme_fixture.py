"""The README's pytest fixture for the simulated exchange, exactly as shown there, in use: here
(in this project's ``asyncio_mode = "auto"``), and in a pytest of its own in pytest-asyncio's
default strict mode, as a new project has it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from binance_pm import AccountType, Session
from binance_pm.testing import SimulatedExchange


# --- README: "Testing your code without keys" ---------------------------------------------
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


# --- end of README excerpt -----------------------------------------------------------------


def test_the_readme_fixture_works_in_pytest_asyncios_strict_mode(tmp_path: Path) -> None:
    # A new project: no asyncio_mode setting (strict), none of this project's conftest.
    excerpt = Path(__file__).read_text().split("# --- README")[1].split("# --- end")[0]
    test_file = tmp_path / "test_example.py"
    imports = (
        "from collections.abc import AsyncIterator\n"
        "import pytest\n"
        "import pytest_asyncio\n"
        "from binance_pm import AccountType, Session\n"
        "from binance_pm.testing import SimulatedExchange\n"
    )
    test_file.write_text(imports + excerpt.split("\n", 1)[1])
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

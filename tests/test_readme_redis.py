"""The docs' Redis example ("Share one budget on Redis", ``docs/how-to/redis.md``), taken from
the page and run as written under ``python -W always``, against a real redis-server: it leaves
no connection for the garbage collector (no ``ResourceWarning``), where the same calls without
closing the store do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "how-to" / "redis.md"

# The page's calls with the store left open: what the warning would show.
LEFT_OPEN = """
import asyncio
import sys

from binance_pm import AccountType, Governor, Session
from binance_pm.redis import RedisStore
from binance_pm.testing import SimulatedExchange


async def main(redis_url):
    async with SimulatedExchange(accounts=3, seed=1) as exchange:
        account = next(a for a in exchange.accounts if a.account_type is AccountType.PM_1)
        governor = Governor(store=RedisStore(redis_url, prefix="binance_pm"))
        async with Session(base_url=exchange.base_url, governor=governor) as session:
            await session.client(account.api_key, **account.credentials()).pm_pro_account()


asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="redis-") as directory:
        running = RedisServer(Path(directory))
        running.start()
        try:
            yield running.url
        finally:
            running.stop()


def shown_on_the_page() -> str:
    """The page's program: the Python block that closes its ``RedisStore``."""
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text("utf-8"), re.S | re.M)
    found = [block for block in blocks if "aclosing(RedisStore(" in block]
    assert len(found) == 1
    return str(found[0])


def run_example(code: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code, redis_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_pages_redis_example_runs_and_closes_its_store(redis_url: str) -> None:
    done = run_example(shown_on_the_page(), redis_url)

    assert done.returncode == 0, done.stderr
    assert "uniMMR" in done.stdout
    assert "ResourceWarning" not in done.stderr, done.stderr


def test_a_store_left_open_is_what_the_warning_would_show(redis_url: str) -> None:
    done = run_example(LEFT_OPEN, redis_url)

    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" in done.stderr

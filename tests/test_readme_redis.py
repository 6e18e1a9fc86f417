"""The README's Redis example, run under ``python -W always`` against a real redis-server and a
simulated exchange: it leaves no connection for the garbage collector (no ``ResourceWarning``),
where the same calls without closing the store do."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_server import RedisServer

# The README's lines, with the test's Redis URL and exchange, and one call where it has `...`.
EXAMPLE = """
import asyncio
import sys
from contextlib import aclosing

from binance_pm import Governor, Session
from binance_pm.redis import RedisStore
from binance_pm.testing import SimulatedExchange


async def main(redis_url):
    async with SimulatedExchange(accounts=3, seed=1) as ex:
        account = next(a for a in ex.accounts if a.account_type.value == "PM_1")
        {body}


asyncio.run(main(sys.argv[1]))
"""
CLOSED = """
        async with aclosing(RedisStore(redis_url, prefix="binance_pm")) as store:
            async with Session(base_url=ex.base_url, governor=Governor(store=store)) as s:
                await s.client(account.api_key, **account.credentials()).pm_pro_account()
"""
LEFT_OPEN = """
        gov = Governor(store=RedisStore(redis_url, prefix="binance_pm"))
        async with Session(base_url=ex.base_url, governor=gov) as s:
            await s.client(account.api_key, **account.credentials()).pm_pro_account()
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


def run_example(body: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    code = EXAMPLE.replace("{body}", body.strip())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code, redis_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_readme_redis_example_closes_its_store(redis_url: str) -> None:
    done = run_example(CLOSED, redis_url)

    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr, done.stderr


def test_a_store_left_open_is_what_the_warning_would_show(redis_url: str) -> None:
    done = run_example(LEFT_OPEN, redis_url)

    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" in done.stderr

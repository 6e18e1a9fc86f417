"""The documentation site: it builds in mkdocs' strict mode, its API reference names every
public name by its public path, and its code samples are complete programs that run as written
(those that start a simulated exchange of their own, and the tutorial's against
``binance-pm serve``).

Each sample runs in a process of its own, in a process group of its own, at most
:data:`AT_ONCE` at a time (each starts its own simulated exchange, and a busy two-core machine
may be running two copies of the suite), with a generous deadline each; whatever happens, every
sample still running when its test ends is killed and waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import pytest

import binance_pm
import binance_pm.fleet
import binance_pm.redis
import binance_pm.testing

from .served import serve

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: Samples running at once: each starts a simulated exchange, and more at a time only starve
#: one another on a small machine.
AT_ONCE = 2
#: Seconds a sample may take before it is killed: a few on a quiet machine, many more on a
#: busy one.
SAMPLE_TIMEOUT = 120.0


def python_blocks() -> dict[str, str]:
    """Every fenced Python block of the docs, named by its page and its place there."""
    blocks = {}
    for page in sorted(DOCS.rglob("*.md")):
        for number, block in enumerate(PYTHON_BLOCK.findall(page.read_text("utf-8"))):
            blocks[f"{page.relative_to(DOCS).with_suffix('')}#{number}"] = block
    return blocks


class Ran(NamedTuple):
    """How a sample ended: its exit status (``None``: killed at its deadline) and output."""

    returncode: int | None
    out: str
    err: str

    @property
    def failure(self) -> str | None:
        if self.returncode == 0:
            return None
        if self.returncode is None:
            return f"killed at its deadline: {self.err[-2000:]}"
        return f"exit status {self.returncode}: {self.err[-2000:]}"


class Samples:
    """Runs sample programs, each in a process group of its own, and owns them: leaving the
    ``with`` block, however it is left, kills every group still running and waits for its
    process, and refuses to start any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._closed = False

    def __enter__(self) -> Samples:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._closed = True
            left = list(self._running)
        for process in left:
            kill_group(process)
        for process in left:
            process.wait()

    def run(
        self,
        code: str,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = SAMPLE_TIMEOUT,
    ) -> Ran:
        """Run ``code`` with ``args`` to its end, or kill it at ``timeout`` seconds."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the samples were stopped")
            process = subprocess.Popen(
                [sys.executable, "-c", code, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                start_new_session=True,
            )
            self._running.add(process)
        # Any other way out (Ctrl-C, say) leaves it registered, for ``__exit__`` to kill.
        try:
            out, err = process.communicate(timeout=timeout)
            status = process.returncode
        except subprocess.TimeoutExpired:
            kill_group(process)
            out, err = process.communicate()
            status = None
        with self._lock:
            self._running.discard(process)
        return Ran(status, out, err)


def kill_group(process: subprocess.Popen[str]) -> None:
    """Kill a sample and whatever it started, unless it has already been waited for."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it has just ended by itself
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def reference(site: Path) -> str:
    pages = sorted((site / "reference").rglob("*.html"))
    assert pages
    return "\n".join(page.read_text("utf-8") for page in pages)


def test_the_site_builds_in_strict_mode_with_every_page(site: Path) -> None:
    for page in DOCS.rglob("*.md"):
        built = site / page.relative_to(DOCS).with_suffix("")
        if page.name == "index.md":
            built = built.parent
        assert (built / "index.html").is_file(), page


def test_the_api_reference_names_public_paths_only(reference: str) -> None:
    assert 'id="binance_pm.Session"' in reference
    assert 'id="binance_pm.PMAccount"' in reference
    private = sorted(set(re.findall(r"binance_pm(?:\.\w+)*\._[a-z]\w*", reference)))
    assert private == []


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("binance_pm", [n for n in binance_pm.__all__ if n != "__version__"]),
        ("binance_pm.testing", binance_pm.testing.__all__),
        ("binance_pm.redis", ["RedisStore"]),
        ("binance_pm.fleet", ["Fleet"]),
    ],
)
def test_every_public_name_has_an_entry_in_the_reference(
    reference: str, module: str, names: list[str]
) -> None:
    missing = [name for name in names if f'id="{module}.{name}"' not in reference]
    assert missing == []


def test_the_reference_names_the_redis_modules_store_error(reference: str) -> None:
    assert set(binance_pm.redis.__all__) == {"RedisStore", "StoreError"}
    assert "binance_pm.redis.StoreError" in reference


def test_every_python_sample_is_a_complete_program(tmp_path: Path) -> None:
    blocks = python_blocks()
    for name, block in blocks.items():
        compile(block, name, "exec")  # no top-level await or async with
        if "async def main" in block:
            assert "asyncio.run(main(" in block, name
        (tmp_path / f"{name.replace('/', '_').replace('#', '_')}.py").write_text(block)
    # Pyflakes' checks: every name imported, every import used.
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F,E9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_samples_that_start_their_own_exchange_run_as_written() -> None:
    samples = {
        name: block
        for name, block in python_blocks().items()
        if "import pytest" not in block and "sys.argv" not in block
    }
    assert len(samples) >= 8

    # The runner is left first: its samples are killed before the pool waits for its threads.
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool, Samples() as runner:
        ran = dict(zip(samples, pool.map(runner.run, samples.values()), strict=True))

    failed = {name: run.failure for name, run in ran.items() if run.failure is not None}
    assert failed == {}


class Desk(NamedTuple):
    """``binance-pm serve --accounts 6 --keys-dir DIR``, as the tutorial runs it."""

    base_url: str
    accounts: list[dict[str, str]]
    keys: Path


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    keys = tmp_path_factory.mktemp("tutorial") / "pm-desk"
    with serve("--accounts", "6", "--keys-dir", str(keys)) as running:
        yield Desk(running.base_url, running.accounts, keys)


def tutorial_program(file_name: str) -> str:
    page = (DOCS / "tutorial" / "first-hour.md").read_text("utf-8")
    after = page.split(f"Save this as `{file_name}`", 1)[1]
    found = PYTHON_BLOCK.search(after)
    assert found is not None
    return found.group(1)


def test_the_first_hours_one_account_program_reads_a_pm_pro_account(desk: Desk) -> None:
    pro = next(a for a in desk.accounts if a["account_type"] == "PM_1" and "secret" in a)
    keys = {"BINANCE_API_KEY": pro["api_key"], "BINANCE_API_SECRET": pro["secret"]}

    with Samples() as runner:
        ran = runner.run(tutorial_program("one_account.py"), desk.base_url, env=keys)

    assert ran.failure is None
    assert ran.err == ""
    assert ran.out.startswith("uniMMR ")
    assert "USDT wallet " in ran.out


def test_the_first_hours_desk_program_reads_every_account_of_the_keys_dir(desk: Desk) -> None:
    accounts_file = str(desk.keys / "accounts.toml")

    with Samples() as runner:
        ran = runner.run(tutorial_program("desk.py"), desk.base_url, accounts_file)

    assert ran.failure is None
    lines = ran.out.splitlines()
    assert len(lines) == 3 * len(desk.accounts)
    assert {line.split(":")[0] for line in lines} == {a["name"] for a in desk.accounts}
    assert all("uniMMR" in line for line in lines), ran.out


def test_the_first_hours_serve_output_is_what_serve_prints(desk: Desk) -> None:
    page = (DOCS / "tutorial" / "first-hour.md").read_text("utf-8")
    shown = [json.loads(line) for line in page.splitlines() if line.startswith('{"name": ')]

    assert [list(a) for a in shown] == [list(a) for a in desk.accounts]
    kinds = [(a["name"], a["account_type"], a["key_type"]) for a in desk.accounts]
    assert [(a["name"], a["account_type"], a["key_type"]) for a in shown] == kinds

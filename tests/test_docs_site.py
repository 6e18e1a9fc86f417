"""The documentation site: it builds in mkdocs' strict mode, its API reference names every
public name by its public path, and its code samples are complete programs that run as written
(those that start a simulated exchange of their own, and the tutorial's against
``binance-pm serve``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import binance_pm
import binance_pm.redis
import binance_pm.testing

from .served import serve

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> dict[str, str]:
    """Every fenced Python block of the docs, named by its page and its place there."""
    blocks = {}
    for page in sorted(DOCS.rglob("*.md")):
        for number, block in enumerate(PYTHON_BLOCK.findall(page.read_text("utf-8"))):
            blocks[f"{page.relative_to(DOCS).with_suffix('')}#{number}"] = block
    return blocks


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


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
    running = {name: run_python(block) for name, block in samples.items()}
    failed = {}
    for name, process in running.items():
        _, err = process.communicate(timeout=90)
        if process.returncode != 0:
            failed[name] = err[-2000:]
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

    process = run_python(tutorial_program("one_account.py"), desk.base_url, env=keys)
    out, err = process.communicate(timeout=60)

    assert err == ""
    assert out.startswith("uniMMR ")
    assert "USDT wallet " in out


def test_the_first_hours_desk_program_reads_every_account_of_the_keys_dir(desk: Desk) -> None:
    accounts_file = str(desk.keys / "accounts.toml")

    process = run_python(tutorial_program("desk.py"), desk.base_url, accounts_file)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 * len(desk.accounts)
    assert {line.split(":")[0] for line in lines} == {a["name"] for a in desk.accounts}
    assert all("uniMMR" in line for line in lines), out


def test_the_first_hours_serve_output_is_what_serve_prints(desk: Desk) -> None:
    page = (DOCS / "tutorial" / "first-hour.md").read_text("utf-8")
    shown = [json.loads(line) for line in page.splitlines() if line.startswith('{"name": ')]

    assert [list(a) for a in shown] == [list(a) for a in desk.accounts]
    kinds = [(a["name"], a["account_type"], a["key_type"]) for a in desk.accounts]
    assert [(a["name"], a["account_type"], a["key_type"]) for a in shown] == kinds

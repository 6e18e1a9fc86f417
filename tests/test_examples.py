"""Every recipe in ``examples/`` runs as a user runs it, and shows what it says it shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"

#: What each recipe's output must show.
SHOWS = {
    "quickstart.py": ["PM Pro SPAN", "AuthError"],  # its last step shows a refused signature
    "custom_governor.py": ["SlidingLog", "MemoryStore", "no room in the shared rate-limit"],
}


def test_every_recipe_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SHOWS)


@pytest.mark.parametrize("name", sorted(SHOWS))
def test_the_recipe_runs(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for text in SHOWS[name]:
        assert text in done.stdout

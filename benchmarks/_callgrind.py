"""Running a benchmark's body under ``valgrind --tool=callgrind``: instructions executed, which
noise cannot move, where CPU time on a shared or virtual machine moves by a tenth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def counted(script: Path, arguments: list[str], profile: Path) -> tuple[str, int]:
    """Run ``python script arguments`` under callgrind, its profile written to ``profile``
    (for ``callgrind_annotate``): what it printed, and the instructions it executed."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={profile}",
            f"--log-file={profile}.log",
            sys.executable,
            str(script),
            *arguments,
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    for line in profile.read_text().splitlines():
        found = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if found:
            return done.stdout, int(found.group(1))
    raise ValueError(f"no instruction total in {profile}")

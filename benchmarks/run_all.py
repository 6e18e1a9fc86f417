"""Run every benchmark, one after another, and write ``benchmarks/RESULTS.md``.

Each script runs in its own process (so none inherits another's state or core pinning), with a
time limit; their output, the machine and the package versions go into RESULTS.md. Run:
``python benchmarks/run_all.py`` after ``pip install -e '.[bench]'``. Takes about twenty-five
minutes on two cores (streams.py about fifteen: its events and idle streams three, its desks
about twelve).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "decode",
    "governor",
    "end_to_end",
    "budget",
    "scale",
    "keys",
    "poller",
    "http_stack",
    "websocket_libs",
    "streams",
)
LIMIT_SECONDS = 240
#: Scripts that need longer (streams.py: its desks connect at the exchange's connection limit;
#: end_to_end.py runs transports.py after its own table).
LONGER = {"streams": 1800, "end_to_end": 600}
PACKAGES = (
    "binance-pm",
    "httpx",
    "aiohttp",
    "anyio",
    "msgspec",
    "cryptography",
    "uvicorn",
    "aiolimiter",
    "orjson",
    "pydantic",
    "ccxt",
    "python-binance",
    "httpx2",
    "httpx-aiohttp",
    "aiosonic",
    "pyreqwest",
    "rnet",
)


def machine() -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- CPU: {cpu}, {cores} cores available",
        f"- {platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
    ]


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main() -> int:
    started = datetime.datetime.now(datetime.timezone.utc)
    sections = []
    failed = []
    for name in SCRIPTS:
        print(f"== {name}", flush=True)
        begun = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(HERE / f"{name}.py")],
                capture_output=True,
                text=True,
                timeout=LONGER.get(name, LIMIT_SECONDS),
                check=False,
            )
            output = done.stdout.rstrip()
            if done.returncode != 0:
                failed.append(name)
                output += f"\n(exit status {done.returncode})\n{done.stderr.strip()[-2000:]}"
        except subprocess.TimeoutExpired:
            failed.append(name)
            output = f"(did not finish within {LONGER.get(name, LIMIT_SECONDS)} s)"
        took = time.monotonic() - begun
        print(output, flush=True)
        doc = (HERE / f"{name}.py").read_text().split('"""')[1].strip().splitlines()[0]
        sections.append(
            f"## {name}\n\n{doc} (`benchmarks/{name}.py`, {took:.0f} s)\n\n```\n{output}\n```\n"
        )
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python benchmarks/run_all.py` on {started:%Y-%m-%d %H:%M} UTC. How to "
        "read them: [README.md](README.md). Shared, noisy machine: compare the ratios within a "
        "table, not absolute times across runs.",
        "",
        *machine(),
        f"- Packages: {versions()}",
        "",
        *sections,
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'RESULTS.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

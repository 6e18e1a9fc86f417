"""Run every benchmark, one after another, and write ``benchmarks/RESULTS.md``.

Each script runs in its own process (so none inherits another's state or core pinning), with a
time limit; their output, the machine and the package versions go into RESULTS.md. Run:
``python benchmarks/run_all.py`` after ``pip install -e '.[bench]'``. Takes about forty
minutes on two cores (streams.py about fifteen: its events and idle streams three, its desks
about twelve). ``--only NAME …`` runs those scripts alone and puts their sections in the
RESULTS.md there is.
"""

from __future__ import annotations

import argparse
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
    "fleet",
)
LIMIT_SECONDS = 240
#: Scripts that need longer (streams.py: its desks connect at the exchange's connection limit;
#: end_to_end.py runs transports.py after its own table; poller.py polls 10,000 accounts twice).
LONGER = {"streams": 1800, "end_to_end": 600, "poller": 480}
PACKAGES = (
    "binance-pm",
    "httpx",
    "aiohttp",
    "httptools",
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
    parser = argparse.ArgumentParser(description="Run every benchmark; write RESULTS.md.")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCRIPTS,
        help="run these alone, and put their sections in the RESULTS.md there is (replacing "
        "theirs), noting when each ran",
    )
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    sections = []
    failed = []
    for name in args.only or SCRIPTS:
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
        when = f", run alone on {started:%Y-%m-%d %H:%M} UTC" if args.only else ""
        sections.append(
            f"## {name}\n\n{doc} (`benchmarks/{name}.py`, {took:.0f} s{when})\n\n"
            f"```\n{output}\n```\n"
        )
    if args.only:
        _replace_sections(HERE / "RESULTS.md", sections)
        return 1 if failed else 0
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


def _replace_sections(path: Path, sections: list[str]) -> None:
    """Put each ``## name`` section in ``path`` in place of the one it had, or at its end."""
    text = path.read_text()
    for section in sections:
        head = section.split("\n", 1)[0] + "\n"
        start = text.find(head)
        if start < 0:
            text = text.rstrip("\n") + "\n\n" + section
            continue
        end = text.find("\n## ", start + len(head))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    path.write_text(text)
    print(f"updated {path}")


if __name__ == "__main__":
    sys.exit(main())

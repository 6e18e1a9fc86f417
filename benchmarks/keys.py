"""Keys: what adding a client costs the event loop, by key type, and how long a desk of RSA
accounts takes to be ready.

For each key type (HMAC, Ed25519, RSA-2048, RSA-4096), ``session.client(...)`` is called on a
running event loop while a probe task wakes every millisecond; the table gives the time one
call takes (the median of several) and the longest the probe waited past its wake-up (the
loop's stall). Beside it, the same PEM loaded as cryptography does by default, with its check
of the RSA key's parts, which is what loading cost before. Then 1,000 RSA-4096 clients made in
a row: the seconds until all are ready. Target: a stall of at most 5 ms for every key type,
1,000 RSA accounts ready in seconds. Run: ``python benchmarks/keys.py``. About a minute.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from binance_pm import Session

PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
PLAIN = serialization.NoEncryption()
ROUNDS = 7


def keys_of(kind: str) -> dict[str, Any]:
    if kind == "HMAC":
        return {"secret": secrets.token_urlsafe(48)}
    if kind == "Ed25519":
        key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind.split("-")[1]))
    return {"private_key": key.private_bytes(PEM, PKCS8, PLAIN)}


async def stall_while(make: Callable[[], object]) -> tuple[float, float]:
    """(seconds ``make()`` took, the longest the 1 ms probe waited past its time) with the
    loop running a probe beside it."""
    longest = 0.0
    running = True

    async def probe() -> None:
        nonlocal longest
        while running:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            longest = max(longest, time.perf_counter() - due)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0.02)  # the probe settled
    longest = 0.0
    started = time.perf_counter()
    make()
    took = time.perf_counter() - started
    await asyncio.sleep(0.01)  # the probe sees the stall
    running = False
    await task
    return took, longest


STALL_TARGET = 0.005  # seconds the event loop may stall while a client is made
READY_TARGET = 5.0  # seconds for 1,000 RSA accounts: "in seconds"


async def main() -> None:
    print("| key | client() (ms) | loop stall (ms) | default load, parts checked (ms) |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    async with Session() as session:
        for kind in ("HMAC", "Ed25519", "RSA-2048", "RSA-4096"):
            keys = keys_of(kind)
            made, stalls, checked = [], [], []
            for _ in range(ROUNDS):
                took, stall = await stall_while(partial(session.client, "k" * 64, **keys))
                made.append(took)
                stalls.append(stall)
                pem = keys.get("private_key")
                if isinstance(pem, bytes):
                    started = time.perf_counter()
                    serialization.load_pem_private_key(pem, None)
                    checked.append(time.perf_counter() - started)
            old = f"{statistics.median(checked) * 1000:.2f}" if checked else "-"
            print(
                f"| {kind} | {statistics.median(made) * 1000:.3f} | "
                f"{statistics.median(stalls) * 1000:.2f} | {old} |"
            )
            worst = max(worst, statistics.median(stalls))
        keys = keys_of("RSA-4096")
        started = time.perf_counter()
        for _ in range(1000):
            session.client("k" * 64, **keys)
        ready = time.perf_counter() - started
        print(f"\n1,000 RSA-4096 clients ready in {ready:.2f} s")
        verdict = "met" if worst <= STALL_TARGET and ready <= READY_TARGET else "MISSED"
        print(
            f"longest stall {worst * 1000:.2f} ms (target <= {STALL_TARGET * 1000:.0f} ms), 1,000"
            f" RSA accounts in {ready:.2f} s (target <= {READY_TARGET:.0f} s): {verdict}"
        )


if __name__ == "__main__":
    asyncio.run(main())

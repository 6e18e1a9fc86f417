"""Scale: memory per additional ``session.client(...)``, up to 10,000 accounts.

Measured two ways, over N, after making N clients on one Session: memory Python allocated and
still holds (tracemalloc), and the growth of resident memory, which also counts what the
cryptography library allocates natively (coarse: the allocator reuses freed pages). N is
1,000, 5,000 and 10,000 HMAC accounts, 1,000 and 10,000 Ed25519 accounts, and 200 RSA
accounts (what loading costs the event loop is ``benchmarks/keys.py``'s). A client holds its
masked key, its signer and the loaded key; its UID budget in the governor (about 830
bytes, ``benchmarks/governor.py``) is made on its first UID-weighted call, and its poll job
(``benchmarks/poller.py``, which also gives the CPU per poll) only while it is polled.
Target: under 5 KB per account. Run: ``python benchmarks/scale.py``. Takes about 20 seconds.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import tracemalloc

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from binance_pm import Session

PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
PLAIN = serialization.NoEncryption()


def hmac_keys(count: int) -> list[dict[str, str | bytes]]:
    return [{"secret": secrets.token_urlsafe(48)} for _ in range(count)]


def ed25519_keys(count: int) -> list[dict[str, str | bytes]]:
    return [
        {"private_key": ed25519.Ed25519PrivateKey.generate().private_bytes(PEM, PKCS8, PLAIN)}
        for _ in range(count)
    ]


def rsa_keys(count: int) -> list[dict[str, str | bytes]]:
    made = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)]
    pems = [key.private_bytes(PEM, PKCS8, PLAIN) for key in made]
    return [{"private_key": pems[i % len(pems)]} for i in range(count)]


def resident() -> int:
    """This process's resident memory in bytes (Linux), native allocations included."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


async def per_client(keys: list[dict[str, str | bytes]]) -> tuple[float, float]:
    """Bytes per client, the keys' own text aside: Python's allocations (tracemalloc), and
    resident memory, which also counts what the cryptography library allocates natively."""
    api_keys = [secrets.token_urlsafe(48) for _ in keys]
    session = Session()
    gc.collect()
    rss = resident()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    clients = [
        session.client(api_key, **key)  # type: ignore[arg-type]
        for api_key, key in zip(api_keys, keys, strict=True)
    ]
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    gc.collect()
    grown = resident() - rss
    assert len(clients) == len(keys)
    await session.aclose()
    return held / len(keys), grown / len(keys)


async def main() -> None:
    print("memory per additional session.client(...), target < 5 KB")
    rows = [
        ("HMAC", 1_000, hmac_keys),
        ("HMAC", 5_000, hmac_keys),
        ("HMAC", 10_000, hmac_keys),
        ("Ed25519", 1_000, ed25519_keys),
        ("Ed25519", 10_000, ed25519_keys),
        ("RSA", 200, rsa_keys),
    ]
    for kind, count, make in rows:
        traced, grown = await per_client(make(count))
        print(
            f"  {kind:<8} {count:>6} clients: {traced:7.0f} bytes per client traced, "
            f"{grown:7.0f} bytes resident"
        )


if __name__ == "__main__":
    asyncio.run(main())

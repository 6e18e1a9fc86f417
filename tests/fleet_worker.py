"""One process of a fleet sharing a Redis-backed budget: ``python tests/fleet_worker.py``.

Reads a JSON job on stdin (exchange base URL, Redis URL and prefix, window and limits, seconds,
accounts), polls those accounts flat out through one Session whose governor uses the store,
and prints a JSON summary: updates, errors by kind.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from binance_pm import Governor, Limits, Session
from binance_pm._endpoints import STATE_ENDPOINT
from binance_pm.redis import RedisStore

ENDPOINT = STATE_ENDPOINT


async def main(job: dict[str, Any]) -> dict[str, Any]:
    store = RedisStore(job["redis"], prefix=job["prefix"])
    governor = Governor(window=job["window"], store=store, limits=Limits(**job["limits"]))
    errors: Counter[str] = Counter()
    updates = 0
    async with Session(base_url=job["base_url"], governor=governor, timeout=30) as session:
        jobs = {}
        for a in job["accounts"]:
            keys = {"secret": a["secret"]} if "secret" in a else {"private_key": a["private_key"]}
            jobs[session.client(a["api_key"], **keys)] = ENDPOINT[a["account_type"]]
        print("ready", flush=True)
        sys.stdin.readline()  # all processes start together
        stop = time.monotonic() + job["seconds"]
        async with session.poll(jobs, every=0.01) as stream:
            async for update in stream:
                updates += 1
                if update.error is not None:
                    errors[type(update.error).__name__] += 1
                if time.monotonic() >= stop:
                    break
    await store.aclose()
    return {"updates": updates, "errors": dict(errors)}


if __name__ == "__main__":
    job = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(main(job))), flush=True)

"""``binance-pm watch --fleet REDIS_URL``: one member of a fleet of watchers on Redis.

Every member is given the same accounts file; the fleet is named by those accounts, so that
``--fleet`` alone defines it. The members share the accounts out (:class:`binance_pm.fleet.Fleet`)
and the rate-limit budgets through the same Redis: IP budgets per egress (``--source-address``),
UID budgets per account across the whole fleet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from .._config import LEASE_TTL
from ._common import positive


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet",
        default=None,
        metavar="REDIS_URL",
        help="watch as one member of a fleet on this Redis: every member given the same "
        "accounts file watches its share of them, and the budgets are shared through it "
        "(needs the redis extra)",
    )
    parser.add_argument(
        "--member",
        default=None,
        metavar="NAME",
        help="this member's name in the fleet (default: host:pid)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=positive(float),
        default=LEASE_TTL,
        metavar="S",
        help=f"seconds a member's hold on an account lasts unless renewed; a dead member's "
        f"accounts are taken over within about 1.25 times this (default {LEASE_TTL:g})",
    )


def fleet_name(names: Iterable[str]) -> str:
    """The fleet's name, from its accounts' names: the same file, the same fleet."""
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()
    return f"watch-{digest[:12]}"


def make_fleet(
    args: argparse.Namespace, names: Iterable[str], *, source: str | None, jsonl: bool
) -> tuple[Any, Any]:
    """The fleet this member joins, and the store its governor shares the budgets through.
    ``ImportError`` without the redis extra; ``ValueError`` for a bad option."""
    from ..fleet import Fleet
    from ..redis import RedisStore
    from .board import utc_text

    name = fleet_name(names)

    def told(why: str | None) -> None:
        if why is None:
            text = f"binance-pm: fleet {name}: Redis answers again; this member takes its share"
        else:
            text = (
                f"binance-pm: fleet {name}: cannot reach Redis ({why}): this member takes "
                "nothing and watches nothing once its leases may have run out"
            )
        print(text, file=sys.stderr, flush=True)
        if jsonl:
            record = {
                "member": fleet.member,
                "fleet": name,
                "time": utc_text(time.time()),
                "redis": "lost" if why is not None else "back",
                "error": why,
            }
            print(json.dumps(record), flush=True)

    fleet = Fleet(
        args.fleet, name=name, member=args.member, lease_ttl=args.lease_ttl, on_trouble=told
    )
    store = RedisStore(args.fleet, egress=source)
    return fleet, store

"""The user data streams of every account of ``binance-pm serve``, followed for a few seconds.

``Session.stream`` takes a mapping from each client to its product's stream: ``"pm"`` for PM
accounts (``/pm/ws/<listenKey>``), ``"pm_pro"`` for PM Pro and PM Pro SPAN
(``/pm-classic/ws/<listenKey>``). It opens each account's listen key, connects (paced by the
budget of connection attempts), and hands over typed events: ``PMProAccountUpdate`` (pushed
every ``--push-every`` seconds on a PM Pro stream), ``RiskLevelChange`` (when an account's
uniMMR crosses a level), and a ``connected`` update per connection. Leaving the block closes
the connections and the listen keys.

Run: ``python examples/stream_events.py`` (starts ``binance-pm serve --push-every 0.5``
itself), or ``python examples/stream_events.py serve.txt`` against a running one whose output
is in ``serve.txt`` (see ``examples/_served.py``; serve pushes every 5 s unless started with
``--push-every``). ``--seconds 10`` to run longer; Ctrl-C stops it early.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from decimal import Decimal

import anyio
from _served import arguments, served

from binance_pm import (
    AccountType,
    AsyncClient,
    PMProAccountUpdate,
    RiskLevelChange,
    Session,
    StreamUpdate,
)

#: The stream each account type's figures are pushed on.
STREAM = {AccountType.PM_2: "pm", AccountType.PM_1: "pm_pro", AccountType.PM_3: "pm_pro"}


def figure(value: Decimal | None, spec: str = ",.2f") -> str:
    """An amount for the screen (the exchange may leave one out: ``None``)."""
    return "n/a" if value is None else format(value, spec)


def describe(update: StreamUpdate) -> str:
    """One stream update in a line."""
    head = f"{update.name} {update.product:6s}"
    event = update.event
    if update.connected:
        return f"{head} connected"
    if update.error is not None:
        end = " (its stream ends)" if update.final else " (reconnecting)"
        return f"{head} error: {type(update.error).__name__}: {update.error}{end}"
    if isinstance(event, PMProAccountUpdate):
        return (
            f"{head} {event.event}: uniMMR {figure(event.uni_mmr, '.4f')}, equity "
            f"{figure(event.account_equity)} USD, maint. margin {figure(event.maint_margin)} USD"
        )
    if isinstance(event, RiskLevelChange):
        return f"{head} {event.event}: {event.level.value} at uniMMR {event.uni_mmr}"
    return f"{head} {event.event if event is not None else 'nothing'}"


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], seconds=3.0).parse_args()
    serve_args = ("--accounts", "10", "--seed", "1", "--push-every", "0.5")
    async with (
        served(args.serve_output, *serve_args) as exchange,
        Session(base_url=exchange.base_url) as session,
    ):
        streams: dict[AsyncClient, str] = {
            account.client(session): STREAM[account.account_type] for account in exchange.accounts
        }
        events: Counter[str] = Counter()
        connected: set[str] = set()
        started = time.monotonic()
        with anyio.move_on_after(args.seconds):  # the stream's block ends, its keys closed
            async with session.stream(streams) as feed:
                async for update in feed:
                    if update.connected:
                        connected.add(update.name)
                    elif update.event is not None:
                        events[update.event.event] += 1
                    print(f"{time.monotonic() - started:5.2f}s {describe(update)}")
        took = time.monotonic() - started
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(events.items()))
        print(
            f"{len(connected)} of {len(streams)} accounts connected; "
            f"{sum(events.values())} events in {took:.1f} s ({kinds or 'none'})"
        )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C: the blocks above have closed, serve is stopped
        sys.exit(130)

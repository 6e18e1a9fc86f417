"""A poll's jobs: one per (client, endpoint) pair, checked when the poll is made, each with the
call it makes and the gate of the budget it spends (an API family's IP budget, or the account's
UID budget)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._endpoints import ACCOUNT_ENDPOINTS, STATE_ENDPOINT, Endpoint
from ._fairness import Gate
from ._limits import Budget

if TYPE_CHECKING:
    from ._client import AccountResult, AsyncClient

#: The endpoints ``Session.poll`` knows, by the client method's name.
POLLABLE = tuple(ACCOUNT_ENDPOINTS)
#: A job's call: ``on_grant`` is called when the governor lets the request out.
JobCall = Callable[..., Awaitable["AccountResult"]]


class Job:
    """One (client, endpoint) pair of a poll: its call, its gate, and its place in the
    schedule and the fair queue."""

    __slots__ = (
        "call",
        "client",
        "due",
        "endpoint",
        "entry",
        "failures",
        "front",
        "gate",
        "go",
        "inside",
        "key",
        "soon",
        "tag",
        "weight",
    )

    def __init__(
        self,
        client: AsyncClient,
        endpoint: Endpoint[Any],
        call: JobCall,
        gate: Gate,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.call = call
        self.gate = gate
        self.tag = 0.0
        self.key: float | None = None  # the priority of its last result, if a number
        self.weight = 1.0  # its share at its gate, from the rank of its key when last set
        self.go: anyio.Event | None = None
        self.inside = False  # through its gate, and not yet let out by the governor
        self.failures = 0  # in a row
        self.entry: int | None = None  # its live entry in the schedule; None while in flight
        self.due = math.inf  # when that entry is due
        self.soon = math.inf  # in flight and hurried: its next turn comes no later than this
        self.front = False  # its next turn goes first at its gate (taken from another member)

    def granted(self) -> None:
        """The governor let the call out (or it ended first): the gate may let another in."""
        if self.inside:
            self.inside = False
            self.gate.leave()


class Sharing(Protocol):
    """What ``Session.poll(..., fleet=...)`` needs of a fleet that shares accounts out among
    processes (:class:`binance_pm.fleet.Fleet` is one)."""

    def mine(self, client: AsyncClient) -> bool:
        """Whether this process polls ``client``'s account now; asked as each turn comes and
        again as the governor lets its request out (a request of an account that is not this
        process's does not leave)."""
        ...

    async def run(
        self, clients: Iterable[AsyncClient], *, gained: Callable[[list[AsyncClient]], None]
    ) -> None:
        """Share ``clients`` out with the other processes until cancelled, calling
        ``gained`` with the accounts this process takes (the poll polls them at once)."""
        ...


def plan_jobs(
    clients: Iterable[AsyncClient] | Mapping[AsyncClient, str | Sequence[str]],
    endpoints: str | Sequence[str] | None,
    asset: str | None,
) -> list[Job]:
    """The jobs to run, checked: every name known, ``asset`` where one is needed."""
    if isinstance(clients, Mapping):
        if endpoints is not None:
            raise TypeError("give endpoints per client in the mapping, or for all, not both")
        pairs = [(client, _names(names)) for client, names in clients.items()]
    elif endpoints is None:  # each account's state, by its product
        pairs = [(client, (_state_endpoint(client),)) for client in clients]
    else:
        names = _names(endpoints)
        pairs = [(client, names) for client in clients]
    gates: dict[Budget, Gate] = {}
    jobs = []
    for client, names in pairs:
        for name in names:
            endpoint = ACCOUNT_ENDPOINTS[name]
            gate = gates.setdefault(endpoint.budget_for(client.api_key), Gate())
            jobs.append(Job(client, endpoint, _caller(client, endpoint, asset), gate))
    return jobs


def _state_endpoint(client: AsyncClient) -> str:
    if client.product is None:
        raise TypeError(
            f"poll needs endpoints (a name, a list of names, or a mapping), or clients whose "
            f"product is known: {client!r} has none (Session.client(..., product=...), or "
            "await client.detect_product())"
        )
    return STATE_ENDPOINT[client.product.value]


def _names(endpoints: str | Sequence[str]) -> tuple[str, ...]:
    names = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
    if not names:
        raise ValueError("poll needs at least one endpoint")
    for name in names:
        if name not in POLLABLE:
            raise ValueError(f"unknown endpoint {name!r}; known: {', '.join(POLLABLE)}")
    return names


def _caller(client: AsyncClient, endpoint: Endpoint[Any], asset: str | None) -> JobCall:
    wanted = asset if "asset" in endpoint.params else None
    endpoint.query(wanted)  # checked now: a missing asset is the caller's mistake
    return partial(client.call, endpoint.name, asset=wanted)

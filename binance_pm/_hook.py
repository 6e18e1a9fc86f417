"""The contract between a Session and a rate-limit governor.

Every request a Session sends, retries and clock measurements included, first asks the governor
for a :class:`Permit` for its endpoint's weight, and reports back through the permit what became
of it. A permit whose request never left is cancelled, so its weight is given back; one whose
request left is completed with the answer's status and headers (or with nothing, when no answer
came), from which the governor learns what the exchange counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from ._endpoints import Endpoint


class Permit(Protocol):
    """Leave for one request to go out, holding its weight until told what became of it."""

    def cancel(self) -> None:
        """The request never left: give its weight back."""

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        """The request left; ``status`` and ``headers`` are its answer's (``None``: none came)."""


class RateLimitHook(Protocol):
    """What a Session needs of a governor."""

    def try_acquire(self, endpoint: Endpoint[Any], *, account: str) -> Permit | None:
        """Reserve ``endpoint``'s weight for ``account`` if it may be spent now, else ``None``.

        Never waits: a Session tries this first and awaits :meth:`acquire` only on ``None``.
        """
        ...

    async def acquire(self, endpoint: Endpoint[Any], *, account: str, deadline: float) -> Permit:
        """Wait until ``endpoint``'s weight may be spent for ``account``, then reserve it.

        ``deadline`` is on anyio's clock (``anyio.current_time()``). Cancelling the wait
        reserves nothing.
        """
        ...


class StoreError(Exception):
    """A shared rate-limit store could not be reached or did not answer."""


class SharedCount(NamedTuple):
    """One budget as a shared store holds it (see ``Governor.asnapshot``)."""

    held: int  # weight charged by every process and not yet expired
    external: int  # weight the exchange reported beyond theirs
    resets_in: float  # seconds until all it holds has expired
    closed_for: float  # seconds a 429, or a pause after lost counts, keeps it shut


class Store(Protocol):
    """Where a governor keeps budgets shared by many processes (``binance_pm.redis``)."""

    def member(self) -> str:
        """A name for one request, unique across processes."""
        ...

    async def charge(
        self,
        budgets: Sequence[tuple[str, int, int]],
        *,
        family: str,
        member: str,
        hold: float,
        window: float,
    ) -> float:
        """Charge ``(name, weight, limit)`` budgets together or none: 0.0 when charged, else
        seconds until it is worth asking again. Raises :class:`StoreError`."""
        ...

    async def finish(
        self,
        budgets: Sequence[tuple[str, int, int | None, bool]],
        *,
        family: str,
        member: str,
        window: float,
        shut: float,
        ban: float,
    ) -> None:
        """A request's answer. Raises :class:`StoreError`."""
        ...

    async def cancel(self, budgets: Sequence[tuple[str, int]], *, member: str) -> None:
        """A request that never left. Raises :class:`StoreError`."""
        ...

    async def read(
        self, budgets: Sequence[str], *, families: Sequence[str]
    ) -> tuple[list[SharedCount], dict[str, float]]:
        """Each budget's count, and each family's ban in seconds. Raises :class:`StoreError`."""
        ...

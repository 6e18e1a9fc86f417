"""The contracts a caller may implement: a rate-limit hook and its permits, and a shared store.

Every request a Session sends, retries and clock measurements included, first asks its
:class:`RateLimitHook` for a :class:`Permit` for the endpoint's weight, and reports back through
the permit what became of it. A permit whose request never left is cancelled, so its weight is
given back; one whose request left is completed with the answer's status and headers (or with
nothing, when no answer came), from which the hook learns what the exchange counted. Then the
Session awaits :meth:`Permit.settle` before the call goes on.

:class:`~binance_pm.Governor` is the hook a Session makes by default; a :class:`Store` lets
governors in many processes share their budgets (``binance_pm.redis.RedisStore`` is one).
Everything named in these signatures is exported by ``binance_pm``, so a hook or a store can be
written against the package's public names alone (``examples/custom_governor.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from ._endpoints import Endpoint


class Permit(Protocol):
    """Leave for one request to go out, holding its weight until told what became of it.

    The Session calls exactly one of :meth:`cancel` and :meth:`complete`, then :meth:`settle`.
    """

    def cancel(self) -> None:
        """The request never left: give its weight back."""

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        """The request left; ``status`` and ``headers`` are its answer's (``None``: none came)."""

    async def settle(self) -> None:
        """Tell whatever must hear of the request once :meth:`cancel` or :meth:`complete` was
        called: a store other processes share, say. The Session awaits it before the call
        goes on, shielded from cancellation and for a few seconds at most (except with a
        :class:`~binance_pm.Governor` that counts in this process alone, whose permits have
        nothing to tell)."""


class RateLimitHook(Protocol):
    """What a Session needs of a governor: :class:`~binance_pm.Governor`, or your own, given
    as ``AsyncClient(governor=...)`` or ``Session(governor=...)``.

    Two methods, both handing out a :class:`Permit` for an :class:`~binance_pm.Endpoint`'s
    weight: ``examples/custom_governor.py`` writes one, a sliding log per API family, with
    nothing but names that ``binance_pm`` exports.
    """

    def try_acquire(self, endpoint: Endpoint[Any], *, account: str) -> Permit | None:
        """Reserve ``endpoint``'s weight for ``account`` if it may be spent now, else ``None``.

        Never waits: a Session tries this first and awaits :meth:`acquire` only on ``None``.
        ``account`` is the API key of a signed call, ``""`` for a public one.
        """
        ...

    async def acquire(self, endpoint: Endpoint[Any], *, account: str, deadline: float) -> Permit:
        """Wait until ``endpoint``'s weight may be spent for ``account``, then reserve it.

        ``deadline`` is the moment the call must end, on anyio's clock
        (``anyio.current_time()``): raise :class:`~binance_pm.GovernorTimeout` rather than
        wait past it. Cancelling the wait reserves nothing.
        """
        ...


class StoreError(Exception):
    """A shared rate-limit store could not be reached or did not answer."""


class SharedCount(NamedTuple):
    """One budget as a shared store holds it (see ``Governor.asnapshot``).

    Attributes:
        held: weight charged by every process and not yet expired.
        external: weight the exchange reported beyond theirs.
        resets_in: seconds until all it holds has expired.
        closed_for: seconds a 429, or a pause after lost counts, keeps it shut.
    """

    held: int
    external: int
    resets_in: float
    closed_for: float


class Store(Protocol):
    """Where a governor keeps budgets shared by many processes (``binance_pm.redis``).

    Budgets are named as :meth:`Governor.snapshot` names them (``"papi_ip"``), except that an
    account's UID budget is ``"sapi_uid:"`` and its API key. Every method that talks to the
    store raises :class:`StoreError` when it cannot.
    """

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
        seconds until it is worth asking again. An answer that never comes stops counting
        ``hold`` seconds from now."""
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
        """A request's answer: ``(name, weight, reported used weight or None, shut by this
        429)`` per budget it reports on; ``shut`` and ``ban`` in seconds (0: none)."""
        ...

    async def cancel(self, budgets: Sequence[tuple[str, int]], *, member: str) -> None:
        """A request that never left: give back its ``(name, weight)`` budgets."""
        ...

    async def read(
        self, budgets: Sequence[str], *, families: Sequence[str]
    ) -> tuple[list[SharedCount], dict[str, float]]:
        """Each budget's count, and each family's ban in seconds (0: none)."""
        ...

"""What a running poll or stream hands its caller: :class:`Update` (``Session.poll``) and
:class:`StreamUpdate` (``Session.stream``), and the default ranking of a poll's accounts."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

from ._models import AccountStatus

if TYPE_CHECKING:
    from ._client import AccountResult, AsyncClient
    from ._events import StreamEvent
    from ._exceptions import BinancePMError


class Update(msgspec.Struct, frozen=True):
    """One poll's outcome: ``result`` when the call succeeded, else ``error``. A frozen
    msgspec Struct (``msgspec.structs.replace(update, ...)`` makes a changed copy): made for
    every answer, so it costs about 0.1 µs, not a dataclass's 1 µs.

    Attributes:
        client: the account's client.
        endpoint: the endpoint's name, as in ``Session.poll`` (``"pm_pro_account"``…).
        result: what the client method returned, or ``None`` on error.
        error: the :class:`~binance_pm.BinancePMError` the call ended in, or ``None``.
        at: when the answer (or the failure) came, in seconds since the epoch.
        final: this job polls no more (its key was refused, or the Session closed); with
            ``source="stream"``, the account's stream is over (the REST side goes on).
        source: where it came from: ``"rest"`` (a call), or ``"stream"`` (pushed, with
            ``poll(..., stream=True)``: then ``event`` holds the pushed event and ``result``
            is ``None``; an ``error`` is the stream's, which reconnects by itself).
        event: the pushed :class:`~binance_pm.StreamEvent`, for ``source="stream"``.
    """

    client: AsyncClient
    endpoint: str
    result: AccountResult | None
    error: BinancePMError | None
    at: float
    final: bool = False
    source: str = "rest"
    event: StreamEvent | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        """The account's name (:attr:`AsyncClient.name`)."""
        return self.client.name


class StreamUpdate(msgspec.Struct, frozen=True):
    """One thing a stream told: an ``event``, a (re)connection, or a failure.

    Attributes:
        client: the account's client.
        product: ``"pm"`` or ``"pm_pro"``.
        event: the typed event (:class:`~binance_pm.RiskLevelChange`,
            :class:`~binance_pm.PMProAccountUpdate` …), or ``None``.
        error: why the stream broke (it reconnects by itself), or ``None``; a message that
            could not be decoded is an error update too, and the stream goes on.
        at: when it came, in seconds since the epoch.
        connected: the stream has just (re)connected: events pushed while it was down are not
            sent again, so this is the time to read the account over REST (``Session.poll``
            with ``stream=True`` does).
        final: this account's stream ends here (its key was refused).
    """

    client: AsyncClient
    product: str
    event: StreamEvent | None
    error: BinancePMError | None
    at: float
    connected: bool = False
    final: bool = False

    @property
    def name(self) -> str:
        """The account's name (:attr:`AsyncClient.name`)."""
        return self.client.name


def default_priority(update: Update) -> float:
    """Accounts in trouble first: a status other than NORMAL, then the lowest ``uni_mmr``.

    Results without either (balances) rank last.
    """
    result = update.result
    status = getattr(result, "account_status", None)
    if status is not None and status != AccountStatus.NORMAL:
        return -math.inf
    uni_mmr = getattr(result, "uni_mmr", None)
    try:
        ratio = float(uni_mmr) if uni_mmr is not None else math.inf
    except (TypeError, ValueError, ArithmeticError):
        return math.inf
    return math.inf if math.isnan(ratio) else ratio

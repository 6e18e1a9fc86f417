"""The simulated exchange's door for stream connections: every handshake is a connection
attempt, counted per client IP over a sliding ``Limits.ws_window``. Past ``Limits.ws_connect``
the upgrade is refused with 429 and a ``Retry-After``; an IP that tries again before that
time (past a few attempts already on their way) is banned, 418, every API family with it, as
the exchange bans an IP; no handshake from a banned IP is accepted, whichever family earned
the ban."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .._limits import FAMILIES
from ._limits import Counter, retry_after_text
from ._messages import ban_text, error_body

if TYPE_CHECKING:
    from .._limits import Limits
    from ._limits import Warden
    from ._stats import ExchangeStats

#: A ban of any of these, by the REST families' warden, refuses handshakes; a ban earned by
#: handshakes bans them all (the IP).
BANNED_WITH = (*FAMILIES, "ws")


class Exchange(Protocol):
    """What the door needs of the simulated exchange."""

    limits: Limits
    stats: ExchangeStats
    window: float

    def server_ms(self) -> int: ...

    def warden(self, address: str) -> Warden: ...


class Doorman:
    """Counts connection attempts per client IP, and refuses or bans past the limit."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._attempts: dict[str, Counter] = {}  # per client IP

    def admit(self, ip: str) -> tuple[int, str, bytes] | None:
        """Count a connection attempt from ``ip``: ``None`` to let it on, or the refusal's
        status, ``Retry-After`` and body."""
        exchange = self.exchange
        stats, warden = exchange.stats, exchange.warden(ip)
        now = exchange.server_ms()
        stats.ws_attempts += 1
        stats.charge("ws_connect", 1, now, exchange.window)
        banned = [warden.banned_until(f, now) for f in BANNED_WITH]
        until = max((b for b in banned if b is not None), default=None)
        if until is not None:
            stats.ws_banned += 1
            return 418, retry_after_text((until - now) / 1000.0), error_body(-1003, ban_text(until))
        counter = self._attempts.get(ip)
        if counter is None:
            limits = exchange.limits
            counter = self._attempts[ip] = Counter(
                limits.ws_connect, limits.ws_window * 1000.0, "sliding"
            )
        fits = counter.fits(1, now)
        counter.charge(1, now)
        if fits:
            return None
        key = f"ws_connect:{ip}"
        if warden.in_cooldown(key, now):
            until = warden.ban_all(BANNED_WITH, now)
            stats.bans += 1
            stats.ws_banned += 1
            return 418, retry_after_text((until - now) / 1000.0), error_body(-1003, ban_text(until))
        wait = counter.seconds_until_fits(1, now)
        warden.refused(key, now, wait)
        stats.ws_refused += 1
        message = f"Too many connection attempts; the limit is {counter.limit}."
        return 429, retry_after_text(wait), error_body(-1003, message)

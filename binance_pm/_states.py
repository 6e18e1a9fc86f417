"""What :meth:`Governor.snapshot` shows of each budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketState:
    """One budget as :meth:`Governor.snapshot` sees it.

    Attributes:
        limit: weight allowed per window (after ``headroom``).
        used: weight counted now: held, in flight, and reported from outside.
        external: the part of ``used`` the exchange reported beyond this governor's own.
        waiters: calls waiting for this budget.
        rejections: 429s and 418s the exchange answered for it.
        resets_in: seconds until all weight held now has expired (in-flight weight aside).
        closed_for: seconds until a 429 or 418 stops holding this budget shut (0 when open).
        bans: of the ``rejections``, the 418s (IP bans) this process was answered.
        kind: what it counts: ``"ip"`` (an API family's, or one endpoint's, weight per IP),
            ``"uid"`` (one account's weight) or ``"connect"`` (stream connection attempts).
    """

    limit: int
    used: int
    external: int
    waiters: int
    rejections: int
    resets_in: float
    closed_for: float
    bans: int = 0
    kind: str = "ip"

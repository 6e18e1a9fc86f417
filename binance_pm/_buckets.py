"""One rate-limit budget: the weight it holds, and until when.

A request's weight is held from the moment it is let out until one window after its answer came
back (or its failure was seen). The exchange counts a request when it arrives, which is somewhere
between those two moments; holding it that long keeps *every* interval of one window, wherever
the exchange's clock puts it, at or under the limit, and so is safe whether the exchange counts in
fixed windows or sliding ones:

    For an interval [s, s+W) at the exchange, let k be the last request let out among those that
    arrived in it. Any other such request j arrived at or after s, so its answer came back at
    r_j >= s > g_k - W: it was still held when k was let out, and k was let out only if all of
    them fit under the limit.

Finished requests are kept as (expiry, weight) in the order they finished, so expiries only grow
and expiring them is a pop from the front: O(1) per request, whatever the window holds.

A :class:`Bucket` changes only through its own methods (a grant, an answer, what the answer's
count teaches, a refusal, its queue); whether a weight may go is one rule, :meth:`Bucket.needed`.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._learning import SHARED_WINDOWS, Marks
from ._limits import Budget
from ._states import BucketState

if TYPE_CHECKING:
    from ._wakeup import Wakeup


class Bucket:
    """The held weight of one budget (an API family's IP weight, or an account's UID weight)."""

    __slots__ = (
        "_expiries",
        "_head",
        "_weights",
        "answered",
        "bans",
        "cautious_until",
        "closed_until",
        "confirmed",
        "confirmed_at",
        "confirmed_until",
        "external",
        "external_mark",
        "external_until",
        "family",
        "finished_total",
        "gone_total",
        "held",
        "inflight",
        "kind",
        "label",
        "limit",
        "outside_peak",
        "rejections",
        "scope",
        "shared_until",
        "uid_calls",
        "waiters",
        "window",
    )

    def __init__(self, key: Budget, limit: int, window: float, label: str | None = None) -> None:
        # Its key's parts, not the key: one object fewer per account's budget.
        self.kind = key.kind
        self.scope = key.scope
        self.label = label  # its name, when its key's would not tell it from another's
        self.family = key.family
        self.limit = limit
        self.window = window
        self.held = 0  # weight of finished requests not yet expired
        self.inflight = 0  # weight let out whose answer has not come
        self.external = 0  # weight the exchange reports beyond ours (another process, say)
        self.external_until = 0.0  # unless an answer says it again, external weight lapses then
        # All our weight let out when ``external`` was last estimated afresh: the answers of
        # requests let out before then were on their way together with that one.
        self.external_mark = 0
        self.gone_total = 0  # all weight ever expired or given back
        self.finished_total = 0  # all weight ever let out whose request has finished
        # The last answer's count and all of ours that may have arrived after it must leave
        # room too (:meth:`learn`), until ``confirmed_until``.
        self.confirmed = 0
        self.confirmed_at = 0.0
        self.confirmed_until = 0.0
        # Until then, answers have lately shown weight that is not ours: the count's room
        # keeps a request's weight to spare for what others spend before the next answer,
        # and is trusted only as long as they take to spend that much, at the rate of the
        # most outside weight seen meanwhile (``outside_peak`` per window).
        self.shared_until = 0.0
        self.outside_peak = 0
        self.answered = False  # an answer came: until then, one request at a time
        self.cautious_until = 0.0  # after a 429: estimates of outside weight only go up
        self.closed_until = 0.0  # after a 429: nothing goes out before this
        self.rejections = 0  # 429s and 418s seen
        self.bans = 0  # of which 418s
        self.uid_calls = 0  # UID calls let out whose answers report on this (IP) budget
        self.waiters: deque[Waiter] | None = None  # made on first wait: most buckets never wait
        # Arrays, not lists: 16 bytes a held request instead of 40, for thousands of accounts.
        self._expiries = array("d")
        self._weights = array("q")
        self._head = 0

    @property
    def key(self) -> Budget:
        """Which budget it is."""
        return Budget(self.family, self.kind, self.scope)

    @property
    def name(self) -> str:
        """As snapshots, errors and logs name it (made when asked: a string per account's
        budget would weigh more than the rest of it)."""
        return self.label if self.label is not None else self.key.shown

    def expire(self, now: float) -> None:
        expiries = self._expiries
        head = self._head
        if head < len(expiries) and expiries[head] <= now:
            weights = self._weights
            freed = 0
            while head < len(expiries) and expiries[head] <= now:
                freed += weights[head]
                head += 1
            self.held -= freed
            self.gone_total += freed
            if head > 64 and head * 2 > len(expiries):
                del expiries[:head]
                del weights[:head]
                head = 0
            self._head = head

    def used(self, now: float) -> int:
        """Weight counted against the limit now: held, in flight, and reported from outside."""
        self.expire(now)
        if self.external and now >= self.external_until:
            self.external = 0
        return self.held + self.inflight + self.external

    def can_take(self, weight: int, now: float, waiter: Waiter | None = None) -> bool:
        """Whether ``weight`` may go now as far as this budget's count says (a 429's or 418's
        shut aside): nobody ahead of ``waiter`` in its queue, an answer come if anything is in
        flight (the first answer tells what others spend), and the room :meth:`needed` says it
        takes free on top of what is held, in flight and reported from outside."""
        waiters = self.waiters
        if waiters and waiters[0] is not waiter:
            return False
        inflight = self.inflight
        if inflight and not self.answered:
            return False
        expiries = self._expiries
        if self._head < len(expiries) and expiries[self._head] <= now:
            self.expire(now)
        external = self.external
        if external and now >= self.external_until:
            self.external = external = 0
        limit = self.limit
        ours = self.held + inflight + external
        if ours + weight > limit:
            return False
        # needed()'s two common cases, inline (tests/test_bucket_rule.py holds them to it).
        if now >= self.confirmed_until:
            return not inflight or now >= self.shared_until
        if now >= self.shared_until:
            return not inflight or self.confirmed + inflight + self.finished_total + weight <= limit
        room = self.needed(weight, now)
        return room is not None and ours + room <= limit

    def needed(self, weight: int, now: float) -> int | None:
        """The room ``weight`` more needs in our own count once the last answer's count has
        had its say: ``weight``; ``None`` when that count has no room and a request in flight
        will bring a new one. With others spending, a count older than ``fresh_for`` has no
        room unless a window of the most they spend fits on it, and with nothing in flight the
        request that goes to ask takes as much again to spare (at most the limit): an error in
        the estimate of outside weight does not make it fall short."""
        if now >= self.confirmed_until:
            return weight if not self.inflight or now >= self.shared_until else None
        inflight, limit = self.inflight, self.limit
        counted = self.confirmed + inflight + self.finished_total + weight
        if now >= self.shared_until:
            return weight if counted <= limit or not inflight else None
        spare = min(weight, limit - weight)
        if counted + spare <= limit:
            # Room, if what others spend before the next answer fits too: a whole window of
            # their most (the limit is far off), or their share of the time the count has aged.
            if counted + self.outside_peak <= limit:
                return weight
            fresh_for = self.window * weight / max(self.outside_peak, weight)
            if now < self.confirmed_at + fresh_for:
                return weight
        return None if inflight else weight + spare

    def take(
        self, weight: int, other: Bucket | None = None, other_weight: int = 0
    ) -> tuple[int, ...]:
        """A request is let out with ``weight`` of this budget and ``other_weight`` of
        ``other``, the other budget its answer reports on: in flight until it finishes or is
        given back. Returns the :class:`~binance_pm._learning.Marks` of each as it goes, flat,
        then ``other``'s UID calls (one object a request: one per budget costs the acquire a
        third more in garbage collection alone)."""
        self.inflight += weight
        gone = self.gone_total
        if other is None:
            return (self.held + self.inflight + gone, self.finished_total, gone)
        other.inflight += other_weight
        gone2 = other.gone_total
        return (
            self.held + self.inflight + gone,
            self.finished_total,
            gone,
            other.held + other.inflight + gone2,
            other.finished_total,
            gone2,
            other.uid_calls,
        )

    def give_back(self, weight: int) -> None:
        """A request let out never left: its weight was not spent."""
        self.inflight -= weight
        self.gone_total += weight

    def count_uid_call(self, now: float) -> None:
        """A UID call that takes none of this (IP) budget's weight is let out: its answer will
        report this budget's count too."""
        self.expire(now)
        self.uid_calls += 1

    def learn(self, used: int, weight: int, marks: Marks, now: float) -> None:
        """The exchange counted ``used`` here when a request of ours (``weight``, sent with
        ``marks``) arrived: learn what others spend, and what the count allows.

        Outside weight: what it counts beyond ours, taken to be all of ours not gone by now
        (in a burst many of ours let out after this request overtake it on the way), is held
        as ``external``. It errs low, by ours that reached the exchange after this request
        (let out before or after it), never high (but for ours that expired here while it was
        on its way): so of requests on their way together, the highest estimate stands, and
        the answer to one let out after the last fresh estimate starts afresh.

        With outside weight that estimate is not enough (others spend between answers, answers
        arrive out of order, and fixed windows hide outside weight behind our own from before
        the window's start), so the count itself bounds what follows: it, plus all of ours
        that may have arrived after this request, stays under the limit, and only an answer,
        not an expiry, makes room there. Without outside weight our own count is the stricter.
        """
        until = now + self.window
        self.expire(now)
        gone_now = self.gone_total
        ours = self.held + self.inflight
        outside = max(0, used - ours)
        # The highest lower bound of requests on their way together; and for a window after a
        # 429 (the bucket at its limit, where a low estimate means the next 429), only higher.
        together = marks.granted <= self.external_mark or now < self.cautious_until
        if together and now < self.external_until:
            outside = max(outside, self.external)
        else:
            self.external_mark = ours + gone_now
        self.external, self.external_until = outside, until
        # Others' most, kept longer than seen: in fixed windows our weight from before the
        # window's start hides theirs for most of the next.
        if outside > 0:
            shared = now < self.shared_until
            self.outside_peak = max(self.outside_peak, outside) if shared else outside
        if used > ours + gone_now - marks.gone:
            # Others spend: remembered for a while, through quiet windows that teach nothing.
            self.shared_until = max(self.shared_until, now + SHARED_WINDOWS * self.window)
        # Ours that may have arrived after it: in flight now, or finished since it went out
        # (itself aside): ``confirmed + inflight + finished_total`` with this.
        self.confirmed = used - weight - marks.finished
        self.confirmed_at = now
        self.confirmed_until = until

    def shut(self, now: float, wait: float, *, ban: bool = False) -> None:
        """A 429 (or, ``ban``, a 418) refused a request of this budget: shut it for ``wait``
        seconds. What the refusal's own headers taught stays for the window, so it does not
        reopen into the same wall."""
        window = self.window
        self.rejections += 1
        self.bans += ban
        self.closed_until = max(self.closed_until, now + wait)
        self.external_until = max(self.external_until, now + window)
        self.cautious_until = now + window
        self.shared_until = max(self.shared_until, now + 2 * window)

    def reopen(self) -> None:
        """Open it now, whatever a refusal said."""
        self.closed_until = 0.0

    def finish(self, weight: int, now: float, answered: bool) -> None:
        """A request let out has finished: hold its weight one more window."""
        if answered:
            self.answered = True
        self.inflight -= weight
        self.finished_total += weight
        self._expiries.append(now + self.window)
        self._weights.append(weight)
        self.held += weight

    def time_until_room(self, weight: int, now: float) -> float | None:
        """When ``weight`` more fits as expiries alone free it; ``None`` if they cannot (an
        answer must come first)."""
        room = self.needed(weight, now)
        if room is None:
            return None  # only the next answer can confirm room, and one is on its way
        needed = self.used(now) + room - self.limit
        if needed <= 0:
            return now
        # Reported external weight lapses too, at its own time, between the expiries.
        external = self.external
        expiries, weights = self._expiries, self._weights
        for i in range(self._head, len(expiries)):
            if external and self.external_until <= expiries[i]:
                needed -= external
                external = 0
                if needed <= 0:
                    return self.external_until
            needed -= weights[i]
            if needed <= 0:
                return expiries[i]
        if external and needed - external <= 0:
            return self.external_until
        return None

    def state(self, now: float, banned_until: float) -> BucketState:
        """This budget as :meth:`Governor.snapshot` shows it (``banned_until``: its family's
        418, if any)."""
        used = self.used(now)
        return BucketState(
            limit=self.limit,
            used=used,
            external=self.external,
            waiters=len(self.waiters or ()),
            rejections=self.rejections,
            resets_in=self._expiries[-1] - now if self._head < len(self._expiries) else 0.0,
            closed_for=max(0.0, max(self.closed_until, banned_until) - now),
            bans=self.bans,
            kind=self.kind,
        )

    def describe(self, now: float) -> str:
        """``"papi_ip 120/6000"``, and its waiters if any (for a governor's ``repr``)."""
        waiting = f" ({len(self.waiters)} waiting)" if self.waiters else ""
        return f"{self.name} {self.used(now)}/{self.limit}{waiting}"

    def enqueue(self, waiter: Waiter) -> None:
        """``waiter`` waits for this budget, behind those already waiting."""
        if self.waiters is None:
            self.waiters = deque()
        self.waiters.append(waiter)

    def leave(self, waiter: Waiter) -> None:
        """``waiter`` waits no longer: granted (it was at the head), cancelled or too late."""
        waiters = self.waiters
        if waiters:
            if waiters[0] is waiter:
                waiters.popleft()
            elif waiter in waiters:
                waiters.remove(waiter)

    def wake(self) -> None:
        """Wake the waiter at the head of the queue, if it sleeps: it looks again."""
        waiters = self.waiters
        if waiters:
            event = waiters[0].event
            if event is not None:
                event.set()


class Waiter:
    """A call waiting for weight in one or two buckets."""

    __slots__ = ("buckets", "event", "weights")

    def __init__(self, buckets: tuple[Bucket, ...], weights: tuple[int, ...]) -> None:
        self.buckets = buckets
        self.weights = weights
        self.event: Wakeup | None = None

    def wake_time(self, now: float, banned_until: Mapping[str, float]) -> float | None:
        """The earliest moment this waiter could go, or ``None`` if only an event can tell
        (``banned_until``: each family's 418, if any)."""
        latest = now
        for bucket, weight in zip(self.buckets, self.weights, strict=True):
            shut = max(bucket.closed_until, banned_until[bucket.family])
            if shut > now:
                latest = max(latest, shut)
                continue
            if bucket.waiters and bucket.waiters[0] is not self:
                return None  # a waiter ahead goes first; its going wakes this one
            if not bucket.answered and bucket.inflight:
                return None  # the first answer comes first; it wakes this one
            room_at = bucket.time_until_room(weight, now)
            if room_at is None:
                return None  # in-flight or external weight must come back first
            latest = max(latest, room_at)
        return latest

"""A clock a test moves by assignment, for the classes that take one: no sleeping."""

from __future__ import annotations


class HandClock:
    """Reads ``now``, which the test sets."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

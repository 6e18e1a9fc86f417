"""A poll's fairness, in two pieces: the gate that lets a budget's calls into the governor a few
at a time, in the order of their finish tags (weighted fair queueing), and the ranks of the jobs'
priority keys, from which their weights come."""

from __future__ import annotations

import bisect
import heapq
from typing import Protocol

import anyio

#: Calls per budget let into the governor's queue at once: few, so that the choice of which
#: goes next is made as late as it can be. Calls the governor has let out do not count.
GATE_DEPTH = 2


class Waiting(Protocol):
    """A job waiting at a gate: set ``go`` to let it through; ``None`` once it gave up."""

    go: anyio.Event | None


class Gate:
    """One budget's door to the governor: how many calls are through, and who waits."""

    __slots__ = ("depth", "heap", "inside", "tag")

    def __init__(self, depth: int = GATE_DEPTH) -> None:
        self.depth = depth
        self.heap: list[tuple[float, int, Waiting]] = []
        self.inside = 0
        self.tag = 0.0  # the finish tag of the last job let through

    def leave(self) -> None:
        """A call is through (or gave up): let the next ones in."""
        self.inside -= 1
        while self.inside < self.depth and self.heap:
            tag, _, waiting = heapq.heappop(self.heap)
            if waiting.go is None:
                continue  # cancelled while it waited
            self.inside += 1
            self.tag = tag
            waiting.go.set()
            waiting.go = None


class Ranks:
    """The jobs' priority keys in order, kept as blocks of sorted lists (as a B-tree's leaves
    are), so that a key goes in or out and a rank is found in O(log N + N / BLOCK), instead of
    sorting every key again."""

    __slots__ = ("block", "blocks", "maxes", "size")

    def __init__(self, block: int = 512) -> None:
        self.block = block  # keys per block, at least; twice as many at most
        self.blocks: list[list[float]] = []
        self.maxes: list[float] = []  # each block's last key
        self.size = 0

    def add(self, key: float) -> None:
        blocks, maxes = self.blocks, self.maxes
        self.size += 1
        if not blocks:
            blocks.append([key])
            maxes.append(key)
            return
        i = min(bisect.bisect_left(maxes, key), len(blocks) - 1)
        block = blocks[i]
        bisect.insort(block, key)
        maxes[i] = block[-1]
        if len(block) > 2 * self.block:
            rest = block[self.block :]
            del block[self.block :]
            blocks.insert(i + 1, rest)
            maxes[i] = block[-1]
            maxes.insert(i + 1, rest[-1])

    def remove(self, key: float) -> None:
        i = bisect.bisect_left(self.maxes, key)  # the first block that can hold it holds it
        block = self.blocks[i]
        del block[bisect.bisect_left(block, key)]
        self.size -= 1
        if block:
            self.maxes[i] = block[-1]
        else:
            del self.blocks[i], self.maxes[i]

    def weight(self, key: float) -> float:
        """2.0 for the lowest key down to 1.0 for the highest; equal keys share the mean of
        their ranks."""
        blocks = self.blocks
        i = bisect.bisect_left(self.maxes, key)
        below = sum(map(len, blocks[:i])) + bisect.bisect_left(blocks[i], key)
        j = bisect.bisect_right(self.maxes, key)
        upto = sum(map(len, blocks[:j])) + (
            bisect.bisect_right(blocks[j], key) if j < len(blocks) else 0
        )
        return 2.0 - (below + upto - 1) / 2 / max(self.size - 1, 1)

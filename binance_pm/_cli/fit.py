"""Tables that fit the terminal without cutting what matters: the columns are kept in order of
importance while each fits whole, the others dropped (never truncated); where the output is
not a terminal a person reads (a pipe, a file, ``TERM=dumb``), plain lines instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def plain_output(console: Console) -> bool:
    """Plain lines, not a drawn table: standard output is not a terminal, or a dumb one."""
    return not console.is_terminal or console.is_dumb_terminal


def fitted(
    console: Console,
    make: Callable[[Sequence[int], bool], Table],
    order: Sequence[int],
    *,
    keep: int = 1,
    room: int | None = None,
) -> tuple[Table, list[int]]:
    """The table ``make(kept, False)`` with the columns of ``order`` (most important first)
    that fit ``room`` columns of text (the console's width) whole, and the indices left out.
    The first ``keep`` columns of ``order`` are always kept (fold, don't drop, what must be
    seen). ``make(kept, True)`` is measured: a column that wraps gives there the least width
    it is worth showing at."""
    from rich.measure import Measurement

    width = console.width if room is None else room
    unbounded = console.options.update_width(1 << 16)
    kept = list(order[:keep])
    left_out: list[int] = []
    for index in order[keep:]:
        trial = sorted([*kept, index])
        table = make(trial, True)
        table.expand = False  # its natural width: every cell whole
        need = Measurement.get(console, unbounded, table).maximum
        if need <= width:
            kept = trial
        else:
            left_out.append(index)
    return make(sorted(kept), False), sorted(left_out)

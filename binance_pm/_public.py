"""Public names that say where users find them: ``binance_pm.PMBalance``, not the private module
that defines it."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable
from typing import Any, ForwardRef


def show_public_paths(package: str, names: Iterable[str], namespace: dict[str, Any]) -> None:
    """Every class and function of ``names`` (in ``namespace``, the package's globals) from a
    private module of ``package`` names itself ``package.X``: in reprs, ``help()``, tracebacks
    and the API reference. A class's own annotations are resolved first, against the module
    that wrote them (and the package, for the names that module imports only for type
    checking), so that ``typing.get_type_hints`` and msgspec still find every type they name."""
    for name in names:
        thing = namespace[name]
        home = getattr(thing, "__module__", "")
        if not home.startswith(f"{package}."):
            continue
        own = inspect.get_annotations(thing) if isinstance(thing, type) else None
        if own:
            scope = {**namespace, **vars(sys.modules[home])}
            for key, hint in own.items():
                text = hint.__forward_arg__ if isinstance(hint, ForwardRef) else hint
                if isinstance(text, str):
                    own[key] = eval(text, scope)
            thing.__annotations__ = own
        thing.__module__ = package

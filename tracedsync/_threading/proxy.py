"""`StateProxy`, the wrapt base of the proxies (the pure-Python twin of the locks, and a real
lock wrapped): one ``_self_state`` slot and ``statistics()``. (What the threading primitives
share without wrapt is in `common`: importing this module imports wrapt.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

from .._core.state import PrimState, Statistics


class StateProxy(wrapt.BaseObjectProxy[Any]):
    """The wrapt base of the traced proxies (the twin's locks): the real object,
    and its state in one ``_self_state`` slot (read with `get_state`). Not for direct use."""

    __slots__ = ("_self_state",)

    def statistics(self) -> Statistics:
        """A snapshot of this primitive's counters (as seen by this process)."""
        return get_state(self).statistics()


get_state: Callable[[StateProxy], PrimState] = StateProxy.__dict__["_self_state"].__get__
"""The slot's own descriptor, captured once: cheaper than ``self._self_state`` on a proxy."""



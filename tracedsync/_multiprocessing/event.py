"""`TracedMpEvent`: ``multiprocessing.Event`` behind a proxy that records sets, clears, waits.

Design note. As `_event.py` for threading's Event: the real event does the work, the proxy
reads the flag just before each call (``was_set``, ``already_set``: snapshots, since another
thread or process may flip it at the same instant) and times the wait. Counters are this
process's. The methods are `_event.py`'s (`_flip`, `_wait`), given this proxy's state; unlike
threading's, a wait enters the wait-for graph even when the flag is already set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .._core.state import EventState
from .._threading.event import (  # the books and record are threading.Event's
    _extra_stats,
    _flip,
    _wait,
)
from .._threading.proxy import new_books
from .base import MpProxy
from .base import get_state as _get_any_state

get_state = cast("Callable[[Any], EventState]", _get_any_state)
"""The state of one of this module's proxies (always a `EventState`)."""


class TracedMpEvent(MpProxy):
    """A traced ``multiprocessing.Event``: same behaviour, plus who set, cleared and waited."""

    __slots__ = ()

    @classmethod
    def _setup(cls, st: EventState, shared: Any) -> None:
        new_books(st)
        st.extra_stats = _extra_stats

    def is_set(self) -> bool:
        """Whether the flag is set (``multiprocessing.Event.is_set``)."""
        return get_state(self).raw.is_set()  # type: ignore[no-any-return]

    def set(self) -> None:
        """Set the flag and wake every waiter, exactly as multiprocessing's does; record it."""
        _flip(get_state(self), True)

    def clear(self) -> None:
        """Clear the flag, exactly as multiprocessing's does; record it."""
        _flip(get_state(self), False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` passes, exactly as multiprocessing's."""
        return _wait(get_state(self), timeout, True)

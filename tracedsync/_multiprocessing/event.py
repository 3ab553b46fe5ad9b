"""`TracedMpEvent`: ``multiprocessing.Event`` behind a proxy that records sets, clears, waits.

Design note. As for threading's Event (`tracedsync._threading.event`): the real event does the
work, the proxy reads the flag just before each call (``was_set``, ``already_set``: snapshots,
since another thread or process may flip it at the same instant) and times the wait. Counters
are this process's. The methods (`EventMethods`) call threading's functions with this proxy's state;
unlike threading's, a wait enters the wait-for graph even when the flag is already set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .._core import runtime as rt
from .._core.state import EventState
from .._threading.common import new_books
from .._threading.event import _extra_stats, _flip, _wait_traced
from .._threading.proxy import get_state as _get_any_state
from .base import MpProxy

get_state = cast("Callable[[Any], EventState]", _get_any_state)
"""The state of one of this module's proxies (always a `EventState`)."""


class EventMethods:
    """The methods of the multiprocessing Event's proxy: the real event does the work, exactly as
    the original; each call is recorded by the functions threading's event uses."""

    __slots__ = ()
    register_always = False
    """Whether a wait enters the wait-for graph even when the flag is already set."""

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return get_state(self).raw.is_set()  # type: ignore[no-any-return]

    def set(self) -> None:
        """Set the flag and wake every waiter, exactly as the original; record it."""
        _flip(get_state(self), True)

    def clear(self) -> None:
        """Clear the flag, exactly as the original; record it."""
        _flip(get_state(self), False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` passes, exactly as the original."""
        st = get_state(self)
        raw = st.raw
        if not rt.level:
            return raw.wait(timeout)  # type: ignore[no-any-return]
        return _wait_traced(st, raw.wait, raw.is_set(), timeout, self.register_always)


class TracedMpEvent(EventMethods, MpProxy):
    """A traced ``multiprocessing.Event``: same behaviour, plus who set, cleared and waited."""

    __slots__ = ()
    register_always = True

    @classmethod
    def _setup(cls, st: EventState, shared: Any) -> None:
        new_books(st)
        st.extra_stats = _extra_stats

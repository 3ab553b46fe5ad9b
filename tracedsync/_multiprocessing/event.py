"""`TracedMpEvent`: ``multiprocessing.Event`` behind a proxy that records sets, clears, waits.

Design note. As for threading's Event (`tracedsync._threading.event`): the real event does the
work, the proxy reads the flag just before each call (``was_set``, ``already_set``: snapshots,
since another thread or process may flip it at the same instant) and times the wait. Counters
are this process's. The methods are threading's (`EventMethods`), given this proxy's state;
unlike threading's, a wait enters the wait-for graph even when the flag is already set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .._core.state import EventState
from .._threading.event import EventMethods, _extra_stats
from .._threading.proxy import get_state as _get_any_state
from .._threading.proxy import new_books
from .base import MpProxy

get_state = cast("Callable[[Any], EventState]", _get_any_state)
"""The state of one of this module's proxies (always a `EventState`)."""


class TracedMpEvent(EventMethods, MpProxy):
    """A traced ``multiprocessing.Event``: same behaviour, plus who set, cleared and waited."""

    __slots__ = ()
    register_always = True

    @classmethod
    def _setup(cls, st: EventState, shared: Any) -> None:
        new_books(st)
        st.extra_stats = _extra_stats

"""What the traced Semaphore, Event and Barrier proxies share.

* `untraced` builds the real primitive with the guard on, so the Condition and Lock that
  ``threading`` creates inside it are raw even when ``threading`` is patched: the proxy tells the
  primitive's story, not its internals'.
* `new_books` gives a primitive a raw lock for counters that several threads update at once
  (semaphore holders, event sets from many threads). It is held for a few attribute updates only,
  never while calling the real primitive, so it cannot deadlock; a forked child gets new ones.
* `TracedProxy` is the wrapt base: one ``_self_state`` slot, ``statistics()``, a ``repr`` that
  keeps the original's shape (CPython's tests match it), and copy/pickle that behave like the
  original's.
"""

from __future__ import annotations

import _thread
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import wrapt

from .._core import runtime as rt
from .._core.state import BarrierState, EventState, PrimState, SemaphoreState, Statistics
from .originals import CopiedAsOriginal

T = TypeVar("T")
TIMEOUT_MAX = threading.TIMEOUT_MAX
_allocate_lock = _thread.allocate_lock
_with_books: weakref.WeakSet[SemaphoreState | EventState | BarrierState] = weakref.WeakSet()


def untraced(factory: Callable[..., T], *args: Any) -> T:
    """``factory(*args)`` with the guard on: whatever it creates inside is untraced."""
    guard = rt.guard
    was = getattr(guard, "on", False)
    guard.on = True
    try:
        return factory(*args)
    finally:
        guard.on = was


def new_books(st: SemaphoreState | EventState | BarrierState) -> None:
    """Give ``st`` its own raw lock for multi-writer counters."""
    st.books = _allocate_lock()
    _with_books.add(st)


def _renew_books() -> None:
    # In a forked child, a books lock held by a thread of the parent would never be released.
    for st in list(_with_books):
        st.books = _allocate_lock()


os.register_at_fork(after_in_child=_renew_books)


def plain_timeout(timeout: Any) -> bool:
    """Whether ``timeout`` is one the real primitive accepts without complaint: None or a number
    up to ``threading.TIMEOUT_MAX``. Only then is an exception from a blocked call an
    interruption rather than an argument error."""
    return timeout is None or (type(timeout) in (int, float) and timeout <= TIMEOUT_MAX)


class StateProxy(wrapt.BaseObjectProxy[Any]):
    """The wrapt base of every traced proxy, threading's and multiprocessing's: the real object,
    and its state in one ``_self_state`` slot (read with `get_state`). Not for direct use."""

    __slots__ = ("_self_state",)

    def statistics(self) -> Statistics:
        """A snapshot of this primitive's counters (as seen by this process)."""
        return get_state(self).statistics()


get_state: Callable[[StateProxy], PrimState] = StateProxy.__dict__["_self_state"].__get__
"""The slot's own descriptor, captured once: cheaper than ``self._self_state`` on a proxy."""


class TracedProxy(CopiedAsOriginal, StateProxy):
    """Common base of `TracedSemaphore`, `TracedEvent` and `TracedBarrier`. Not for direct use."""

    __slots__ = ()

    def __repr__(self) -> str:
        # Keep the original's shape: "<threading.Semaphore at 0x.. traced=1.2: value=3>" on
        # 3.11+ (CPython's tests match ": value=3>"), "<threading.Event object at 0x.. traced=..>"
        # on 3.10.
        st = get_state(self)
        r = repr(st.raw)
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        cut = r.find(": ")
        if cut < 0:
            cut = len(r) - 1
        return r[:cut] + extra + r[cut:]

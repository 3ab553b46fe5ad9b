"""What the traced threading primitives share (no wrapt: `proxy` is the wrapt base).

* `untraced` builds the real primitive (or runs a real ``__init__``) with the guard on, so the
  Condition and Lock that ``threading`` creates inside it are raw even when ``threading`` is
  patched: the traced primitive tells its own story, not its internals'.
* `new_books` gives a primitive a raw lock for counters that several threads update at once
  (semaphore holders, event sets from many threads). It is held for a few attribute updates only,
  never while calling the real primitive, so it cannot deadlock; a forked child gets new ones.
* `OriginalSubclass` is the mixin of the traced subclasses of ``threading``'s Semaphore,
  BoundedSemaphore, Event and Barrier: ``statistics()``, a ``repr`` in the original's shape
  (CPython's tests match it), copying as the original copies, the ``stats`` event when it is
  collected; `install_methods` puts their recording methods on (or takes them off) the classes.
"""

from __future__ import annotations

import _thread
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .._core import runtime as rt
from .._core.state import BarrierState, EventState, SemaphoreState, Statistics

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


class OriginalSubclass:
    """Mixin of the traced subclasses of ``threading``'s classes (Semaphore, BoundedSemaphore,
    Event, Barrier): what they have at every level. ``_ts_raw`` is the ``threading`` class,
    ``_ts_state`` the primitive's books."""

    _ts_raw: Any
    _ts_state: Any

    def statistics(self) -> Statistics:
        """A snapshot of this primitive's counters."""
        return self._ts_state.statistics()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        # The original's, as if this were its class, with the id and name inserted:
        # "<threading.Semaphore at 0x.. traced=1.2: value=3>" on 3.11+ (CPython's tests match
        # ": value=3>"), "<threading.Event object at 0x.. traced=1.2>" on 3.10.
        raw = self._ts_raw
        r: str = raw.__repr__(self)
        cls = type(self)
        mine = f"<{cls.__module__}.{cls.__qualname__}"
        if r.startswith(mine):
            r = f"<{raw.__module__}.{raw.__qualname__}" + r[len(mine):]
        st = self._ts_state
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        cut = r.find(": ")
        if cut < 0:
            cut = len(r) - 1
        return r[:cut] + extra + r[cut:]

    def __copy__(self) -> Any:
        # What copy.copy does to the original: a new object of its class sharing its attributes
        # (for these, the Condition inside). The copy is the original's class, untraced.
        raw = self._ts_raw
        new = raw.__new__(raw)
        state = dict(vars(self))
        del state["_ts_state"]
        vars(new).update(state)
        return new

    def __del__(self) -> None:
        # The stats event, while this object can still be read (its state's weak reference to
        # it is cleared before the state itself goes).
        try:
            self._ts_state.report()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def install_methods(table: dict[type, dict[str, Any]], on: bool) -> None:
    """Put each class's recording methods on it (``on``), or take them off, so that the
    original's are found: at level ``off`` a traced class costs what the original costs.

    A class is changed only where it differs: every change gives it a new version tag, and on
    3.12+ a class that has had too many (about a thousand) loses the interpreter's specialised
    attribute access for good; `configure` calls this whether or not the level changed."""
    for cls, methods in table.items():
        present = vars(cls)
        for name, fn in methods.items():
            if on:
                if present.get(name) is not fn:
                    setattr(cls, name, fn)
            elif name in present:
                delattr(cls, name)

"""``threading``'s own primitives, captured when tracedsync is imported (before any `patch()`
can replace them), and the copying and pickling that the proxies borrow from them.

Kept apart from the proxies so that ``import tracedsync`` does not import wrapt: the modules of
the wrapt-based primitives (semaphores, events, barriers, the pure-Python twin of the locks) are
imported when first used, possibly while ``threading`` is patched, and take the originals from
here rather than from ``threading``.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

RawLock = threading.Lock
RawRLock = threading.RLock
RawCondition = threading.Condition
RawSemaphore = threading.Semaphore
RawBoundedSemaphore = threading.BoundedSemaphore
RawEvent = threading.Event
RawBarrier = threading.Barrier

RAW_LOCK_TYPE: type = type(RawLock())
"""The type of a real ``threading.Lock()``."""
RAW_RLOCK_TYPES: tuple[type, ...] = tuple(
    t for t in (getattr(threading, "_CRLock", None), getattr(threading, "_PyRLock", None))
    if t is not None
)
"""The types a real ``threading.RLock()`` can have (the C one and the Python one)."""


class CopiedAsOriginal:
    """Copying and pickling do what they do to the real primitive (for the threading ones: they
    fail exactly as the original's do). A mixin of every threading proxy."""

    __slots__ = ()
    __wrapped__: Any

    def __copy__(self) -> Any:
        return copy.copy(self.__wrapped__)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(self.__wrapped__, memo)

    def __reduce__(self) -> Any:
        return self.__wrapped__.__reduce__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__wrapped__.__reduce_ex__(protocol)

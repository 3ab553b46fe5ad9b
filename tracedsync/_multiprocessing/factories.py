"""The factories of the traced multiprocessing primitives (public face: `tracedsync.mp`).

Each takes multiprocessing's own arguments plus ``ctx`` (a multiprocessing context; None for
multiprocessing's default, resolved as ``BaseContext`` methods resolve it) and ``name`` (a label
for the logs). `tracedsync.patch()` calls exactly these, for multiprocessing's module functions
and for ``multiprocessing.context.BaseContext`` methods (``ctx=self``).

Called from inside tracedsync's own machinery (the guard is on: the internals of the real
primitives, built by `untraced`), each returns the real, untraced primitive. Otherwise each
returns an instance of multiprocessing's own class, subclassed (see `base`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core import runtime as rt
from .._core.sites import user_site
from .._threading.locks import wrap_lock
from .._threading.originals import RAW_LOCK_TYPE, RAW_RLOCK_TYPES
from .barrier import TracedMpBarrier
from .base import real_context, start_method
from .condition import TracedMpCondition
from .event import TracedMpEvent
from .locks import TracedMpLock, TracedMpRLock, _MpLockBase, is_raw_lock, trace_raw_lock
from .semaphore import TracedMpBoundedSemaphore, TracedMpSemaphore
from .values import new_value


def _sync() -> Any:
    from multiprocessing import synchronize

    return synchronize


# -- locks -----------------------------------------------------------------------------------------
def Lock(ctx: Any = None, name: str | None = None, *,
         _site: tuple[Any, int] | None = None) -> TracedMpLock:
    """A new traced ``multiprocessing.Lock`` of context ``ctx``."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().Lock(ctx=ctx)  # type: ignore[no-any-return]  # our own machinery
    return TracedMpLock(ctx=ctx, name=name, _site=_site or user_site(),
                        _extra={"start_method": start_method(ctx)})


def RLock(ctx: Any = None, name: str | None = None, *,
          _site: tuple[Any, int] | None = None) -> TracedMpRLock:
    """A new traced ``multiprocessing.RLock`` of context ``ctx``."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().RLock(ctx=ctx)  # type: ignore[no-any-return]
    return TracedMpRLock(ctx=ctx, name=name, _site=_site or user_site(),
                         _extra={"start_method": start_method(ctx)})


def _traced_lock(lock: Any, site: tuple[Any, int]) -> Any:
    """A lock handed to a Condition or Value: a real multiprocessing or threading lock gets its
    traced lock (one per real lock); anything else is used as it is."""
    if is_raw_lock(lock):
        return trace_raw_lock(lock, None, site, None)
    if isinstance(lock, (RAW_LOCK_TYPE, *RAW_RLOCK_TYPES)):
        return wrap_lock(lock, site=site)
    return lock


def _new_rlock(ctx: Any, name: str | None, site: tuple[Any, int]) -> TracedMpRLock:
    """The RLock multiprocessing would make for a Condition or a Value, traced."""
    return TracedMpRLock(ctx=ctx, name=None if name is None else f"{name}.lock", _site=site,
                         _extra={"start_method": start_method(ctx)})


# -- condition, semaphores, event, barrier --------------------------------------------------------
def Condition(lock: Any = None, ctx: Any = None, name: str | None = None, *,
              _site: tuple[Any, int] | None = None) -> TracedMpCondition:
    """A new traced ``multiprocessing.Condition`` over ``lock`` (a new traced RLock if None; a
    real multiprocessing lock is traced)."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().Condition(lock, ctx=ctx)  # type: ignore[no-any-return]
    site = _site or user_site()
    lock = _new_rlock(ctx, name, site) if lock is None else _traced_lock(lock, site)
    lock_prim = lock.statistics().prim if isinstance(lock, _MpLockBase) else None
    return TracedMpCondition(lock, ctx=ctx, name=name, _site=site,
                             _extra={"lock": lock_prim, "start_method": start_method(ctx)})


def Semaphore(value: int = 1, ctx: Any = None, name: str | None = None, *,
              _site: tuple[Any, int] | None = None) -> TracedMpSemaphore:
    """A new traced ``multiprocessing.Semaphore`` of context ``ctx``."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().Semaphore(value, ctx=ctx)  # type: ignore[no-any-return]
    return TracedMpSemaphore(value, ctx=ctx, name=name, _site=_site or user_site(),
                             _extra={"value": value, "start_method": start_method(ctx)})


def BoundedSemaphore(value: int = 1, ctx: Any = None, name: str | None = None, *,
                     _site: tuple[Any, int] | None = None) -> TracedMpBoundedSemaphore:
    """A new traced ``multiprocessing.BoundedSemaphore`` of context ``ctx``."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().BoundedSemaphore(value, ctx=ctx)  # type: ignore[no-any-return]
    return TracedMpBoundedSemaphore(value, ctx=ctx, name=name, _site=_site or user_site(),
                                    _extra={"value": value, "start_method": start_method(ctx)})


def Event(ctx: Any = None, name: str | None = None, *,
          _site: tuple[Any, int] | None = None) -> TracedMpEvent:
    """A new traced ``multiprocessing.Event`` of context ``ctx``."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().Event(ctx=ctx)  # type: ignore[no-any-return]
    return TracedMpEvent(ctx=ctx, name=name, _site=_site or user_site(),
                         _extra={"start_method": start_method(ctx)})


def Barrier(parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None,
            ctx: Any = None, name: str | None = None, *,
            _site: tuple[Any, int] | None = None) -> TracedMpBarrier:
    """A new traced ``multiprocessing.Barrier`` of context ``ctx``."""
    ctx = real_context(ctx)
    if rt.in_guard():
        return _sync().Barrier(parties, action, timeout, ctx=ctx)  # type: ignore[no-any-return]
    return TracedMpBarrier(parties, action, timeout, ctx=ctx, name=name,
                           _site=_site or user_site(),
                           _extra={"parties": parties, "timeout": timeout,
                                   "start_method": start_method(ctx)})


# -- shared memory -------------------------------------------------------------------------------
def _value_lock(lock: Any, ctx: Any, name: str | None, site: tuple[Any, int]) -> Any:
    """multiprocessing's choice of the lock of a Value/Array, with traced locks."""
    if lock in (True, None):
        lock = _new_rlock(real_context(ctx), name, site)
    else:
        lock = _traced_lock(lock, site)
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def _typecode(typecode_or_type: Any) -> str:
    if isinstance(typecode_or_type, str):
        return typecode_or_type
    return getattr(typecode_or_type, "__name__", repr(typecode_or_type))


def _lock_prim(lock: Any) -> str | None:
    stats = getattr(lock, "statistics", None)
    try:
        return stats().prim if callable(stats) else None
    except Exception:  # pragma: no cover - a user's lock with its own statistics()
        return None


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None,
          name: str | None = None, _site: tuple[Any, int] | None = None) -> Any:
    """A new traced ``multiprocessing.Value``: every get and set of ``.value`` is recorded, and
    an unsynchronised read-modify-write (``v.value += 1``) is reported.

    ``lock=False`` returns the raw shared ctypes object, untraced, as multiprocessing does.
    """
    from multiprocessing import sharedctypes

    if rt.in_guard():
        return sharedctypes.Value(typecode_or_type, *args, lock=lock, ctx=ctx)
    obj = sharedctypes.RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    site = _site or user_site()
    lock = _value_lock(lock, ctx, name, site)
    return new_value(obj, lock, ctx, "Value", name, site,
                     {"typecode": _typecode(typecode_or_type), "lock": _lock_prim(lock)})


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True, ctx: Any = None,
          name: str | None = None, _site: tuple[Any, int] | None = None) -> Any:
    """A new traced ``multiprocessing.Array``: every get and set of an item (or slice) is
    recorded, and an unsynchronised read-modify-write (``a[i] += 1``) is reported.

    ``lock=False`` returns the raw shared ctypes array, untraced, as multiprocessing does.
    """
    from multiprocessing import sharedctypes

    if rt.in_guard():
        return sharedctypes.Array(typecode_or_type, size_or_initializer, lock=lock, ctx=ctx)
    obj = sharedctypes.RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    site = _site or user_site()
    lock = _value_lock(lock, ctx, name, site)
    return new_value(obj, lock, ctx, "Array", name, site,
                     {"typecode": _typecode(typecode_or_type), "length": len(obj),
                      "lock": _lock_prim(lock)})

"""The factories of the traced multiprocessing primitives (public face: `tracedsync.mp`).

Each takes multiprocessing's own arguments plus ``ctx`` (a multiprocessing context; None for
multiprocessing's default, resolved as ``BaseContext`` methods resolve it) and ``name`` (a label
for the logs). `tracedsync.patch()` calls exactly these, for multiprocessing's module functions
and for ``multiprocessing.context.BaseContext`` methods (``ctx=self``).

Called from inside tracedsync's own machinery (the guard is on: the internals of the real
primitives, built by `untraced`), each returns the real, untraced primitive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core import runtime as rt
from .._core.sites import user_site
from .._core.state import ValueState, state_class
from .._threading.locks import wrap_lock
from .._threading.locks_py import _RAW_LOCK_TYPE, _RAW_RLOCK_TYPES
from .barrier import TracedMpBarrier, watch
from .base import MpProxy, new_state, real_context, start_method, untraced
from .condition import TracedMpCondition
from .event import TracedMpEvent
from .locks import TracedMpLock, TracedMpRLock, _MpLockBase, is_raw_lock, new_lock
from .semaphore import TracedMpBoundedSemaphore, TracedMpSemaphore
from .values import traced_value


def _sync() -> Any:
    # Imported when first needed: on a platform without sem_open it raises ImportError there,
    # as multiprocessing does, instead of making `import tracedsync` fail.
    from multiprocessing import synchronize

    return synchronize


def _make(cls: type[MpProxy], raw: Any, kind: str, name: str | None, site: tuple[Any, int],
          extra: dict[str, Any]) -> Any:
    st = new_state(state_class(kind), raw, kind, name, site, extra)
    cls._setup(st, None)
    return cls(raw, st)


# -- locks -----------------------------------------------------------------------------------------
def Lock(ctx: Any = None, name: str | None = None, *,
         _site: tuple[Any, int] | None = None) -> TracedMpLock:
    """A new traced ``multiprocessing.Lock`` of context ``ctx``."""
    ctx = real_context(ctx)
    raw = _sync().Lock(ctx=ctx)
    if rt.in_guard():
        return raw  # type: ignore[no-any-return]  # tracedsync's own machinery: untraced
    return new_lock(raw, name, _site or user_site(), start_method(ctx))  # type: ignore[return-value]


def RLock(ctx: Any = None, name: str | None = None, *,
          _site: tuple[Any, int] | None = None) -> TracedMpRLock:
    """A new traced ``multiprocessing.RLock`` of context ``ctx``."""
    ctx = real_context(ctx)
    raw = _sync().RLock(ctx=ctx)
    if rt.in_guard():
        return raw  # type: ignore[no-any-return]
    return new_lock(raw, name, _site or user_site(), start_method(ctx))  # type: ignore[return-value]


def _traced_lock(lock: Any, site: tuple[Any, int]) -> Any:
    """A lock handed to a Condition or Value: a real multiprocessing or threading lock gets its
    traced proxy (one per real lock); anything else is used as it is."""
    if is_raw_lock(lock):
        return new_lock(lock, None, site, None)
    if isinstance(lock, (_RAW_LOCK_TYPE, *_RAW_RLOCK_TYPES)):
        return wrap_lock(lock, site=site)
    return lock


# -- condition, semaphores, event, barrier --------------------------------------------------------
def Condition(lock: Any = None, ctx: Any = None, name: str | None = None, *,
              _site: tuple[Any, int] | None = None) -> TracedMpCondition:
    """A new traced ``multiprocessing.Condition`` over ``lock`` (a new traced RLock if None; a
    real multiprocessing lock is traced)."""
    ctx = real_context(ctx)
    sync = _sync()
    if rt.in_guard():
        return sync.Condition(lock, ctx=ctx)  # type: ignore[no-any-return]
    site = _site or user_site()
    if lock is None:
        lock = new_lock(sync.RLock(ctx=ctx), None if name is None else f"{name}.lock", site,
                        start_method(ctx))
    else:
        lock = _traced_lock(lock, site)
    raw = untraced(sync.Condition, lock, ctx=ctx)
    lock_prim = lock.statistics().prim if isinstance(lock, _MpLockBase) else None
    return _make(TracedMpCondition, raw, "Condition", name, site,  # type: ignore[no-any-return]
                 {"lock": lock_prim, "start_method": start_method(ctx)})


def Semaphore(value: int = 1, ctx: Any = None, name: str | None = None, *,
              _site: tuple[Any, int] | None = None) -> TracedMpSemaphore:
    """A new traced ``multiprocessing.Semaphore`` of context ``ctx``."""
    ctx = real_context(ctx)
    raw = untraced(_sync().Semaphore, value, ctx=ctx)
    if rt.in_guard():
        return raw  # type: ignore[no-any-return]
    return _make(TracedMpSemaphore, raw, "Semaphore", name,  # type: ignore[no-any-return]
                 _site or user_site(), {"value": value, "start_method": start_method(ctx)})


def BoundedSemaphore(value: int = 1, ctx: Any = None, name: str | None = None, *,
                     _site: tuple[Any, int] | None = None) -> TracedMpBoundedSemaphore:
    """A new traced ``multiprocessing.BoundedSemaphore`` of context ``ctx``."""
    ctx = real_context(ctx)
    raw = untraced(_sync().BoundedSemaphore, value, ctx=ctx)
    if rt.in_guard():
        return raw  # type: ignore[no-any-return]
    return _make(TracedMpBoundedSemaphore, raw, "BoundedSemaphore",  # type: ignore[no-any-return]
                 name, _site or user_site(),
                 {"value": value, "start_method": start_method(ctx)})


def Event(ctx: Any = None, name: str | None = None, *,
          _site: tuple[Any, int] | None = None) -> TracedMpEvent:
    """A new traced ``multiprocessing.Event`` of context ``ctx``."""
    ctx = real_context(ctx)
    raw = untraced(_sync().Event, ctx=ctx)
    if rt.in_guard():
        return raw  # type: ignore[no-any-return]
    return _make(TracedMpEvent, raw, "Event", name, _site or user_site(),  # type: ignore[no-any-return]
                 {"start_method": start_method(ctx)})


def Barrier(parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None,
            ctx: Any = None, name: str | None = None, *,
            _site: tuple[Any, int] | None = None) -> TracedMpBarrier:
    """A new traced ``multiprocessing.Barrier`` of context ``ctx``."""
    ctx = real_context(ctx)
    sync = _sync()
    if rt.in_guard():
        return sync.Barrier(parties, action, timeout, ctx=ctx)  # type: ignore[no-any-return]
    raw = untraced(sync.Barrier, parties, watch(action), timeout, ctx=ctx)
    return _make(TracedMpBarrier, raw, "Barrier", name, _site or user_site(),  # type: ignore[no-any-return]
                 {"parties": parties, "timeout": timeout, "start_method": start_method(ctx)})


# -- shared memory -------------------------------------------------------------------------------
def _value_lock(lock: Any, ctx: Any, name: str | None, site: tuple[Any, int]) -> Any:
    """multiprocessing's choice of the lock of a Value/Array, with traced locks."""
    if lock in (True, None):
        ctx = real_context(ctx)
        lock = new_lock(_sync().RLock(ctx=ctx), None if name is None else f"{name}.lock", site,
                        start_method(ctx))
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
    raw = sharedctypes.synchronized(obj, lock, ctx=ctx)
    st = new_state(ValueState, raw, "Value", name, site,
                   {"typecode": _typecode(typecode_or_type), "lock": _lock_prim(lock)})
    return traced_value(raw, st)


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
    raw = sharedctypes.synchronized(obj, lock, ctx=ctx)
    st = new_state(ValueState, raw, "Array", name, site,
                   {"typecode": _typecode(typecode_or_type), "length": len(obj),
                    "lock": _lock_prim(lock)})
    return traced_value(raw, st)


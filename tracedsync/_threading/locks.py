"""`TracedLock` and `TracedRLock`, and the factories `Lock()` and `RLock()`.

Where the native recorder is in use (`tracedsync._core.native`), the traced locks are its C
types (`NativeLock`, `NativeRLock`), each its own state; elsewhere they are the pure-Python
twin's wrapt proxies (`locks_py`). Either way they behave exactly like ``threading``'s. A real
lock that already exists (given to `tracedsync.Condition`, say) is wrapped by the twin's proxy
even where the native recorder is in use: a native lock is a lock of its own, not a view of
another; `isinstance(proxy, TracedLock)` holds for it all the same.

With the native recorder, the twin (and wrapt with it) is imported only when a real lock is
first wrapped: ``import tracedsync`` does not pay for it. Until then no proxy exists, so the
tests below that would look for one need not.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.state import LockBooks
from .originals import RAW_LOCK_TYPE, RAW_RLOCK_TYPES, CopiedAsOriginal, RawLock, RawRLock

_getframe = sys._getframe

__all__ = [
    "NATIVE_LOCKS",
    "RawLock",
    "RawRLock",
    "TracedLock",
    "TracedRLock",
    "is_traced_lock",
    "lock_state",
    "wrap_lock",
]

_TWIN = __name__.rpartition(".")[0] + ".locks_py"


def _twin() -> Any:
    """The pure-Python twin's module (imported now if it was not)."""
    module = sys.modules.get(_TWIN)
    return module if module is not None else rt.import_untraced(_TWIN)


def _twin_base() -> type | None:
    """The twin's proxy base class if the twin is loaded (else no proxy exists: None)."""
    module = sys.modules.get(_TWIN)
    return None if module is None else cast(type, module._TracedLockBase)


if TYPE_CHECKING:
    from .._core._native import NativeLock as _NativeLock
    from .._core._native import NativeRLock as _NativeRLock
    from .locks_py import PyTracedLock, PyTracedRLock
else:
    _NativeLock = NATIVE.NativeLock if NATIVE is not None else object
    _NativeRLock = NATIVE.NativeRLock if NATIVE is not None else object

if NATIVE is not None:

    class _NativeCopied:
        """Copying and pickling fail as the originals' do (a fresh real lock answers)."""

        __slots__ = ()

        def __copy__(self) -> Any:
            return CopiedAsOriginal.__copy__(cast(Any, _Real(self)))

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            return CopiedAsOriginal.__deepcopy__(cast(Any, _Real(self)), memo)

        def __reduce__(self) -> Any:
            return CopiedAsOriginal.__reduce__(cast(Any, _Real(self)))

        def __reduce_ex__(self, protocol: Any) -> Any:
            return CopiedAsOriginal.__reduce_ex__(cast(Any, _Real(self)), protocol)

    class _Real:
        """Stands for a native lock's original (a fresh real lock of the same kind)."""

        __slots__ = ("__wrapped__",)

        def __init__(self, lock: Any) -> None:
            self.__wrapped__ = RawRLock() if lock.reentrant else RawLock()

    class _TracedMeta(type):
        """`isinstance(x, TracedLock)` also holds for a wrapped real lock (the twin's proxy)."""

        _twin: str  # the twin's class name

        def __instancecheck__(cls, obj: Any) -> bool:
            if type.__instancecheck__(cls, obj):
                return True
            module = sys.modules.get(_TWIN)
            return module is not None and isinstance(obj, getattr(module, cls._twin))

    class TracedLock(_NativeCopied, _NativeLock, metaclass=_TracedMeta):
        """A traced ``threading.Lock``: same behaviour, plus a record of who holds it and who
        waits. It also offers the Condition protocol (``_is_owned``, ``_release_save``,
        ``_acquire_restore``) with the semantics ``threading.Condition`` falls back to for a
        plain lock, so waits on a condition over it are recorded."""

        __slots__ = ()

    class TracedRLock(_NativeCopied, _NativeRLock, metaclass=_TracedMeta):
        """A traced ``threading.RLock``: same behaviour, plus ownership and recursion depth."""

        __slots__ = ()

    TracedLock._twin = "PyTracedLock"
    TracedRLock._twin = "PyTracedRLock"
    for _cls, _raw in ((TracedLock, RawLock()), (TracedRLock, RawRLock())):
        # The deprecated aliases of the version at hand (acquire_lock...), if it has them.
        for _alias, _target in (("acquire_lock", "acquire"), ("release_lock", "release"),
                                ("locked_lock", "locked")):
            if hasattr(_raw, _alias) and hasattr(_cls, _target):
                setattr(_cls, _alias, getattr(_cls, _target))

    NATIVE_LOCKS: tuple[type, ...] = (TracedLock, TracedRLock)
else:
    from .locks_py import PyTracedLock, PyTracedRLock

    TracedLock = PyTracedLock  # type: ignore[misc,assignment]
    TracedRLock = PyTracedRLock  # type: ignore[misc,assignment]
    NATIVE_LOCKS = ()

SPEEDUPS = NATIVE is not None
"""Whether the native recorder's locks are in use."""


def is_traced_lock(obj: Any) -> bool:
    """Whether ``obj`` is a traced Lock or RLock (native, or the twin's proxy)."""
    if isinstance(obj, NATIVE_LOCKS):
        return True
    base = _twin_base()
    return base is not None and isinstance(obj, base)


def lock_state(lock: Any) -> LockBooks:
    """The books of traced lock ``lock``: a native lock is its own."""
    base = _twin_base()
    if base is not None and isinstance(lock, base):
        return cast(LockBooks, _twin()._get_state(lock))
    return cast(LockBooks, lock)


def new_lock(*, name: str | None = None, site: tuple[Any, int] | None = None) -> Any:
    """A traced Lock (native where possible)."""
    return TracedLock(name=name, _site=site)


def new_rlock(*, name: str | None = None, site: tuple[Any, int] | None = None) -> Any:
    """A traced RLock (native where possible)."""
    if NATIVE is not None:
        return TracedRLock(name=name, _site=site)
    return _twin().PyTracedRLock(name=name, _site=site)


def Lock(*, name: str | None = None) -> TracedLock:
    """A new traced ``threading.Lock``; ``name`` labels it in the logs."""
    if rt.in_guard():
        return cast(TracedLock, RawLock())  # tracedsync's own machinery: untraced
    f = _getframe(1)
    return cast(TracedLock, new_lock(name=name, site=(f.f_code, f.f_lineno)))


def RLock(*args: Any, name: str | None = None, **kwargs: Any) -> TracedRLock:
    """A new traced ``threading.RLock`` (extra arguments are handled as ``threading`` does)."""
    raw = RawRLock(*args, **kwargs)  # its warnings and errors are threading's
    if rt.in_guard():
        return cast(TracedRLock, raw)  # tracedsync's own machinery: untraced
    f = _getframe(1)
    if NATIVE is not None:
        return TracedRLock(name=name, _site=(f.f_code, f.f_lineno))
    return cast(TracedRLock, _twin().PyTracedRLock(raw, name=name,
                                                   _site=(f.f_code, f.f_lineno)))


def wrap_lock(lock: Any, *, name: str | None = None, site: tuple[Any, int] | None = None) -> Any:
    """Wrap an existing real lock in the matching traced proxy (others are returned as is)."""
    if is_traced_lock(lock):
        return lock
    if isinstance(lock, RAW_LOCK_TYPE):
        return _twin().PyTracedLock(lock, name=name, _site=site)
    if isinstance(lock, RAW_RLOCK_TYPES):
        return _twin().PyTracedRLock(lock, name=name, _site=site)
    return lock

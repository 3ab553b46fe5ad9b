"""Traced ``multiprocessing.Value`` and ``Array``: every get and set, and unsafe updates.

Design note (the rmw rule itself is in `_mp_rmw`).

* The real object is multiprocessing's own wrapper (``Synchronized``, ``SynchronizedArray``,
  ``SynchronizedString``, ``Synchronized<Structure>``) built over the *traced* lock, so
  ``get_lock()``, ``acquire()``, ``with v:`` and multiprocessing's own code all go through the
  traced lock; ``isinstance(v, multiprocessing.sharedctypes.Synchronized)`` holds.
* The proxy does each access itself, as the real wrapper does (take the lock, read or write the
  ctypes object, release), so that it can record the access inside that critical section, with
  the caller's site: ``value_get``/``value_set`` (at ``full``) saying whether the caller already
  held the lock (``locked``), and the rmw check (at every level but ``off``). Errors (a bad
  index, a value of the wrong type) come from the ctypes object, as in the real wrapper; a
  failed access records nothing.
* ``locked`` is asked of the lock itself where it can answer for the calling thread: a
  multiprocessing lock's semaphore (``_is_mine()``, which also sees acquisitions made behind the
  traced proxy), a traced threading lock's books, a real RLock's ``_is_owned()``. For any other
  lock object it is unknown (null), and no rmw is reported for it.
* Iterating over an Array (and ``in``, ``reversed``) takes the lock once per item, like the real
  wrapper, and records each item read.
* ``lock=False``: multiprocessing returns the raw ctypes object; so do we, untraced: there is no
  lock to observe, and a proxy would break what such objects are used for (the buffer protocol:
  ``memoryview``, ``numpy.frombuffer``; ctypes functions such as ``ctypes.addressof``).
"""

from __future__ import annotations

import operator
import sys
import weakref
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, cast

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_VALUE
from .._core.ops import OP_RMW, OP_VALUE
from .._core.state import LockBooks, LockState, ValueState
from .._threading.locks import is_traced_lock, lock_state
from .._threading.locks_py import _get_state as _get_py_state
from .._threading.locks_py import _TracedLockBase
from .._threading.proxy import get_state as _get_any_state
from . import rmw
from .base import MpProxy, attach_state, reset_in_fork_child
from .locks import _enter, _exit, _MpLockBase, _release, _took, acquire_slow

get_state = cast("Callable[[Any], ValueState]", _get_any_state)
"""The state of one of this module's proxies (always a `ValueState`)."""
_lock_state = cast("Callable[[Any], LockState]", _get_any_state)

_getframe = sys._getframe
_rec = None if NATIVE is None else NATIVE.rec
_NATIVE_MP = NATIVE is not None
FULL = rt.FULL

# How the value's lock is taken and asked about (see _ValueBooks.lock_kind).
_OTHER, _MP, _THREADING, _NATIVE = 0, 1, 2, 3


class _ValueBooks:
    """The per-process books of one traced Value or Array."""

    __slots__ = ("gets", "length", "lock", "lock_kind", "lock_state", "obj", "owned",
                 "real_lock", "rmws", "sets", "unlocked")

    def __init__(self, raw: Any) -> None:
        self.obj = raw.get_obj()
        self.lock = lock = raw.get_lock()
        self.real_lock = lock  # what level off takes: the traced lock's real one, if traced
        self.length = len(self.obj) if hasattr(type(self.obj), "__len__") else 0
        self.lock_state: LockBooks | None = None
        if isinstance(lock, _MpLockBase):
            self.lock_kind = _MP
            self.lock_state = _lock_state(lock)
            self.owned: Any = self.lock_state.raw._semlock._is_mine
            self.real_lock = self.lock_state.raw
        elif is_traced_lock(lock):
            self.lock_kind = _THREADING if isinstance(lock, _TracedLockBase) else _NATIVE
            tst = self.lock_state = lock_state(lock)
            self.owned = lambda: tst.owner == rt.ident() and tst.depth > 0
            self.real_lock = lock if self.lock_kind == _NATIVE else _get_py_state(lock).raw
        else:
            self.lock_kind = _OTHER
            is_owned = getattr(lock, "_is_owned", None)  # a real threading.RLock
            self.owned = is_owned if callable(is_owned) else _unknown
        self.reset()

    def reset(self) -> None:
        self.gets = 0
        self.sets = 0
        self.unlocked = 0
        self.rmws = 0




def _unknown() -> None:
    return None


def _hold(vb: _ValueBooks, me: int) -> int | None:
    """Which holding of the lock the caller is in (the lock's t_hold), if our books know."""
    lst = vb.lock_state
    if lst is not None and lst.owner == me:
        return lst.t_hold
    return None


def _take(vb: _ValueBooks, level: int, fdepth: int) -> None:
    """Acquire the value's lock, its event attributed to the frame ``fdepth`` above _take."""
    kind = vb.lock_kind
    if kind == _MP:  # the traced lock's own paths, without the proxy's method call
        if _NATIVE_MP:
            _enter(vb.lock)  # (the C hot path finds the user's line past these frames)
            return
        lst = vb.lock_state
        if lst.acquire(False):  # type: ignore[union-attr]
            _took(lst, level, fdepth + 1)  # type: ignore[arg-type]
        else:
            acquire_slow(lst, True, None, fdepth + 1)  # type: ignore[arg-type]
    elif kind == _THREADING:
        vb.lock.acquire(True, -1, _depth=fdepth + 1)
    else:  # a native lock (it finds the user's line itself), or a real one
        vb.lock.acquire()


def _access(st: ValueState, f: FrameType, fdepth: int, is_set: bool, item: bool, where: Any,
            key: Any, value: Any = None) -> Any:
    """One get or set, as the real wrapper does it, recorded. ``where`` is an attribute name or
    an index; ``key`` what the events say (None: work it out from the index)."""
    vb: _ValueBooks = st.ext
    level = rt.level
    if not level:  # the real lock itself: nothing to record
        lock = vb.real_lock
        lock.acquire()
        try:
            if is_set:
                if item:
                    vb.obj[where] = value
                else:
                    setattr(vb.obj, where, value)
                return None
            return vb.obj[where] if item else getattr(vb.obj, where)
        finally:
            lock.release()
    me = rt.ident()
    locked = vb.owned()
    hold = _hold(vb, me) if locked else None
    _take(vb, level, fdepth + 1)
    try:
        obj = vb.obj
        if is_set:
            if item:
                obj[where] = value
            else:
                setattr(obj, where, value)
            result = None
        else:
            result = obj[where] if item else getattr(obj, where)
        if item:
            key = _key(vb, where)
        code = f.f_code
        pos = -1 - f.f_lasti  # the site as the hot paths record it (see _sites.SiteFormatter)
        if is_set:
            vb.sets += 1
            read = rmw.check_set(st.prim, key, locked, hold)
            if read is not None:
                _rmw(st, vb, me, key, read, f)
        else:
            vb.gets += 1
            rmw.note_get(st.prim, key, code, pos, locked, hold)
        if not locked:
            vb.unlocked += 1
        if level == FULL:
            if _rec is not None and locked is not None and (key is None or type(key) is int):
                _rec(K_VALUE, st.prim_pid, st.prim_n,
                     is_set | (key is not None) << 1 | locked << 2, key or 0, 0, 0, 0)
            else:
                rt.emit((OP_VALUE, rt.now(), me, st.prim, is_set, key, locked, code, pos))
    finally:
        if vb.lock_kind == _MP:
            if _NATIVE_MP:
                _exit(vb.lock)
            else:
                _release(vb.lock_state)  # type: ignore[arg-type]
        else:
            vb.lock.release()
    return result


def _key(vb: _ValueBooks, index: Any) -> Any:
    """An item's index as events and the rmw check see it: normalised to the array's length."""
    if type(index) is slice:
        return index.indices(vb.length)
    i = operator.index(index)
    return i + vb.length if i < 0 else i


def _rmw(st: ValueState, vb: _ValueBooks, me: int, key: Any, read: rmw.Read,
         f: FrameType) -> None:
    vb.rmws += 1
    site = (f.f_code, f.f_lineno)  # once per line, whichever instruction of it
    if site in rmw.reported:
        return
    rmw.reported.add(site)
    rt.emit((OP_RMW, rt.now(), me, st.prim, key, read[0], read[1], read[2], *site))


# -- the proxies -------------------------------------------------------------------------------
class _SyncBase(MpProxy):
    """What every traced Value/Array shares: the lock API of multiprocessing's wrappers."""

    __slots__ = ()

    def get_obj(self) -> Any:
        """The shared ctypes object itself (accesses through it are not traced)."""
        return get_state(self).ext.obj

    def get_lock(self) -> Any:
        """The value's lock: a traced lock."""
        return get_state(self).ext.lock

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        vb: _ValueBooks = get_state(self).ext
        if vb.lock_kind:
            return vb.lock.acquire(*args, _depth=2, **kwargs)
        return vb.lock.acquire(*args, **kwargs)

    def release(self) -> Any:
        return get_state(self).ext.lock.release()

    def __enter__(self) -> Any:
        vb: _ValueBooks = get_state(self).ext
        if vb.lock_kind == _MP:
            return vb.lock.acquire(True, None, _depth=2)
        if vb.lock_kind == _THREADING:
            return vb.lock.__enter__(2)
        return vb.lock.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        return get_state(self).ext.lock.__exit__(*exc_info)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The proxy class is chosen again from the real wrapper in the child (the classes for
        # ctypes Structures are made on the fly and cannot be pickled by reference).
        st = get_state(self)
        return (_rebuild_value, (self.__wrapped__, st.prim, st.kind, st.name, _extra_of(st)))

    @classmethod
    def _setup(cls, st: ValueState, shared: Any) -> None:
        st.ext = _ValueBooks(st.raw)
        st.extra_stats = _extra_stats
        reset_in_fork_child(st, _reset_books)


class TracedValue(_SyncBase):
    """A traced ``multiprocessing.Value``: every get and set of ``.value`` is recorded."""

    __slots__ = ()

    @property
    def value(self) -> Any:
        st = get_state(self)
        vb: _ValueBooks = st.ext
        if vb.lock_kind != _MP or _rec is None or not rt.level:
            return _access(st, _getframe(1), 2, False, False, "value", None)
        # The common case, with the steps of _access inlined: a Value over a multiprocessing
        # lock, with the native hot path.
        level = rt.level
        locked = vb.owned()
        lst = vb.lock_state
        hold = lst.t_hold if locked and lst.owner == rt.ident() else None  # type: ignore[union-attr]
        _enter(vb.lock)
        try:
            result = vb.obj.value
            vb.gets += 1
            if not locked:
                vb.unlocked += 1
            f = _getframe(1)
            reads = rmw.reads()
            if len(reads) >= rmw.MAX_READS:
                reads.clear()
            reads[(st.prim, None)] = (f.f_code, -1 - f.f_lasti, locked, hold)
            if level == FULL:
                _rec(K_VALUE, st.prim_pid, st.prim_n, 4 if locked else 0, 0, 0, 0, 0)
        finally:
            _exit(vb.lock)
        return result

    @value.setter
    def value(self, value: Any) -> None:
        st = get_state(self)
        vb: _ValueBooks = st.ext
        if vb.lock_kind != _MP or _rec is None or not rt.level:
            _access(st, _getframe(1), 2, True, False, "value", None, value)
            return
        level = rt.level
        locked = vb.owned()
        lst = vb.lock_state
        me = rt.ident()
        hold = lst.t_hold if locked and lst.owner == me else None  # type: ignore[union-attr]
        _enter(vb.lock)
        try:
            vb.obj.value = value
            vb.sets += 1
            if not locked:
                vb.unlocked += 1
            read = rmw.check_set(st.prim, None, locked, hold)
            if read is not None:
                _rmw(st, vb, me, None, read, _getframe(1))
            if level == FULL:
                _rec(K_VALUE, st.prim_pid, st.prim_n, 5 if locked else 1, 0, 0, 0, 0)
        finally:
            _exit(vb.lock)


class TracedArray(_SyncBase):
    """A traced ``multiprocessing.Array``: every get and set of an item or slice is recorded."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        return _access(get_state(self), _getframe(1), 2, False, True, index, None)

    def __setitem__(self, index: Any, value: Any) -> None:
        _access(get_state(self), _getframe(1), 2, True, True, index, None, value)

    def __iter__(self) -> Iterator[Any]:
        # The sequence protocol of the real wrapper: item after item, each under the lock.
        st = get_state(self)
        i = 0
        while True:
            try:
                item = _access(st, _getframe(1), 2, False, True, i, None)
            except IndexError:
                return
            yield item
            i += 1

    def __reversed__(self) -> Iterator[Any]:
        st = get_state(self)
        for i in range(len(st.ext.obj) - 1, -1, -1):
            yield _access(st, _getframe(1), 2, False, True, i, None)

    def __contains__(self, item: Any) -> bool:
        st = get_state(self)
        f = _getframe(1)
        for i in range(len(st.ext.obj)):
            x = _access(st, f, 2, False, True, i, None)
            if x is item or x == item:
                return True
        return False


class TracedCharArray(TracedArray):
    """A traced ``multiprocessing.Array('c', ...)``: items, and ``value``/``raw`` as a whole."""

    __slots__ = ()

    @property
    def value(self) -> Any:
        return _access(get_state(self), _getframe(1), 2, False, False, "value", "value")

    @value.setter
    def value(self, value: Any) -> None:
        _access(get_state(self), _getframe(1), 2, True, False, "value", "value", value)

    @property
    def raw(self) -> Any:
        return _access(get_state(self), _getframe(1), 2, False, False, "raw", "raw")

    @raw.setter
    def raw(self, value: Any) -> None:
        _access(get_state(self), _getframe(1), 2, True, False, "raw", "raw", value)


def _field(name: str) -> property:
    def get(self: _SyncBase) -> Any:
        return _access(get_state(self), _getframe(1), 2, False, False, name, name)

    def put(self: _SyncBase, value: Any) -> None:
        _access(get_state(self), _getframe(1), 2, True, False, name, name, value)

    return property(get, put)


_struct_classes: weakref.WeakKeyDictionary[type, type[_SyncBase]] = weakref.WeakKeyDictionary()


def proxy_class(raw: Any) -> type[_SyncBase]:
    """The traced class for multiprocessing's wrapper ``raw``."""
    from multiprocessing import sharedctypes

    if isinstance(raw, sharedctypes.SynchronizedString):
        return TracedCharArray
    if isinstance(raw, sharedctypes.SynchronizedArray):
        return TracedArray
    if isinstance(raw, sharedctypes.Synchronized):
        return TracedValue
    ctype = type(raw.get_obj())  # a Structure or Union: one property per field
    cls = _struct_classes.get(ctype)
    if cls is None:
        names = [f[0] for f in ctype._fields_]
        body: dict[str, Any] = {"__slots__": ()}
        body.update({n: _field(n) for n in names})
        cls = type(f"TracedValue_{ctype.__name__}", (_SyncBase,), body)
        _struct_classes[ctype] = cls
    return cls


def _extra_stats(st: ValueState) -> dict[str, Any]:
    vb: _ValueBooks = st.ext
    return {"reads": vb.gets, "writes": vb.sets, "unlocked": vb.unlocked, "rmws": vb.rmws}


def _reset_books(st: ValueState) -> None:
    st.ext.reset()  # a forked child counts its own accesses


def _extra_of(st: ValueState) -> dict[str, Any] | None:
    from .base import _extras

    return _extras.get(st)


def traced_value(raw: Any, st: ValueState) -> _SyncBase:
    """The proxy for the real wrapper ``raw`` whose state ``st`` was just made."""
    cls = proxy_class(raw)
    cls._setup(st, None)
    return cls(raw, st)


def _rebuild_value(raw: Any, prim: str, kind: str, name: str | None,
                   extra: dict[str, Any] | None) -> _SyncBase:
    """Unpickling in a child (see `_mp_base`): the same Value, under the same id."""
    cls = proxy_class(raw)
    st = attach_state(raw, prim, kind, name, extra,
                      lambda st: cls._setup(cast(ValueState, st), None))
    return cls(raw, cast(ValueState, st))

"""Traced ``multiprocessing.Value`` and ``Array``: every get and set, and unsafe updates.

Design note (the rmw rule itself is in `rmw`; the classes and the level switch in `base`).

* Each is a subclass of multiprocessing's own wrapper class (``Synchronized``,
  ``SynchronizedArray``, ``SynchronizedString``, the ``Synchronized<Structure>`` classes it makes
  for ctypes Structures), built by multiprocessing's own ``__init__`` over the *traced* lock, so
  ``get_lock()``, ``acquire()``, ``with v:`` and multiprocessing's own code all go through the
  traced lock; ``isinstance(v, multiprocessing.sharedctypes.Synchronized)`` holds. At level off
  the recording accessors are not on the class: a get or set is multiprocessing's own, at its
  cost.
* While tracing, each access is done as the real wrapper does it (take the lock, read or write
  the ctypes object, release), so that it can be recorded inside that critical section, with
  the caller's site: ``value_get``/``value_set`` (at ``full``) saying whether the caller already
  held the lock (``locked``), and the rmw check (at every level but ``off``). Errors (a bad
  index, a value of the wrong type) come from the ctypes object, as in the real wrapper; a
  failed access records nothing.
* A Value's ``value`` and an Array's items by an int index, over a traced multiprocessing lock
  and with the native recorder, are C (``mp_value_get``/``mp_value_set``, the Array's
  ``__getitem__``/``__setitem__``, in ``_core/_native_src/mplock.c``): the lock's C paths, the
  books in C (`_ValueBooks` extends ``MpValueBooks``), the rmw rule called as it is here.
  Everything else (slices, iteration, a char Array's ``value``/``raw``, Structure fields, other
  locks, the pure-Python twin) is `_access` below.
* An access made while the caller holds the value's multiprocessing RLock does not take it
  again: the real wrapper would take it once more and give it back, which changes nothing
  another thread or process can see; the log records the access (``locked: true``), not the
  nested acquire/release pair.
* ``locked`` is asked of the lock itself where it can answer for the calling thread: a
  multiprocessing lock's semaphore (``_is_mine()``, which also sees acquisitions made behind
  the traced lock, through a real lock over the same semaphore), a traced threading lock's
  books, a real RLock's ``_is_owned()``. For any other lock object it is unknown (null), and no
  rmw is reported for it.
* Iterating over an Array (and ``in``, ``reversed``) takes the lock once per item, like the real
  wrapper, and records each item read.
* ``lock=False``: multiprocessing returns the raw ctypes object; so do we, untraced: there is no
  lock to observe, and a wrapper would break what such objects are used for (the buffer
  protocol: ``memoryview``, ``numpy.frombuffer``; ctypes functions such as
  ``ctypes.addressof``).
"""

from __future__ import annotations

import operator
import sys
import weakref
from collections.abc import Iterator
from multiprocessing import sharedctypes
from types import CodeType, FrameType
from typing import Any, ClassVar, cast

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_VALUE
from .._core.ops import OP_RMW, OP_VALUE
from .._core.sites import line_of
from .._core.state import LockBooks, ValueState
from .._threading.locks import is_traced_lock, lock_state
from . import rmw
from .base import (
    MpOriginal,
    _users,
    assert_spawning,
    attach_state,
    info_of,
    new_state,
    register_tracing,
    reset_in_fork_child,
)
from .locks import _MpLockBase, enter_for, release_py

_getframe = sys._getframe
FULL = rt.FULL
Synchronized = sharedctypes.Synchronized
SynchronizedArray = sharedctypes.SynchronizedArray
SynchronizedString = sharedctypes.SynchronizedString

# How the value's lock is taken and asked about (see _ValueBooks.lock_kind).
_OTHER, _MP, _THREADING, _NATIVE = 0, 1, 2, 3

_TWIN = "tracedsync._threading.locks_py"


def _is_twin_lock(lock: Any) -> bool:
    """Whether ``lock`` is the pure-Python twin's proxy of a threading lock (only if the twin is
    loaded: otherwise none exists)."""
    module = sys.modules.get(_TWIN)
    return module is not None and isinstance(lock, module._TracedLockBase)


_BooksBase: type = NATIVE.MpValueBooks if NATIVE is not None else object
_PY_SLOTS = () if NATIVE is not None else (
    "gets", "length", "lock", "lock_books", "obj", "prim", "prim_n", "prim_pid", "rmws", "sets",
    "unlocked")


class _ValueBooks(_BooksBase):  # type: ignore[misc]
    """The per-process books of one traced Value or Array: with the native recorder, the C
    ``MpValueBooks`` (obj, lock, lock_books, prim, length, counters) and these slots."""

    __slots__ = ("lock_kind", "lock_state", "owned", *_PY_SLOTS)
    obj: Any
    lock: Any
    lock_books: Any
    prim: str
    prim_pid: int
    prim_n: int
    length: int
    gets: int
    sets: int
    unlocked: int
    rmws: int

    def __init__(self, value: Any, st: ValueState) -> None:
        self.obj = obj = value._obj
        self.lock = lock = value._lock
        self.prim = st.prim
        self.prim_pid = st.prim_pid
        self.prim_n = st.prim_n
        self.length = len(obj) if hasattr(type(obj), "__len__") else 0
        self.lock_state: LockBooks | None = None
        self.lock_books = None
        if isinstance(lock, _MpLockBase):
            self.lock_kind = _MP
            self.lock_state = lock._ts_state
            self.lock_books = lock._ts_books
            self.owned: Any = lock._semlock._is_mine
        elif is_traced_lock(lock):
            self.lock_kind = _THREADING if _is_twin_lock(lock) else _NATIVE
            tst = self.lock_state = lock_state(lock)
            self.owned = lambda: tst.owner == rt.ident() and tst.depth > 0
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


def _take(vb: _ValueBooks, fdepth: int) -> None:
    """Acquire the value's lock, its event attributed to the frame ``fdepth`` above _take."""
    kind = vb.lock_kind
    if kind == _MP:  # (the C path finds the user's line itself)
        enter_for(vb.lock, fdepth + 1)
    elif kind == _THREADING:
        vb.lock.acquire(True, -1, _depth=fdepth + 1)
    else:  # a native lock (it finds the user's line itself), or a real one
        vb.lock.acquire()


def _give(vb: _ValueBooks) -> None:
    if vb.lock_kind == _MP and NATIVE is None:
        release_py(cast(Any, vb.lock_state))
    else:
        vb.lock.release()


def _access(st: ValueState, f: FrameType, fdepth: int, is_set: bool, item: bool, where: Any,
            key: Any, value: Any = None) -> Any:
    """One get or set, as the real wrapper does it, recorded. ``where`` is an attribute name or
    an index; ``key`` what the events say (None: work it out from the index)."""
    vb: _ValueBooks = st.ext
    level = rt.level
    if not level:  # (the accessors leave the class at off; a call that was running)
        lock = vb.lock
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
    # Not again if the caller holds the multiprocessing RLock (as the C path: see mplock.c).
    take = not (locked and vb.lock_kind == _MP and vb.lock_state.reentrant)  # type: ignore[union-attr]
    if take:
        _take(vb, fdepth + 1)
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
        pos = -1 - f.f_lasti  # the site as the hot paths record it (see _core.sites)
        if is_set:
            vb.sets += 1
            read = rmw.check_set(st.prim, key, locked, hold)
            if read is not None:
                _rmw(st, vb, me, key, read, code, f.f_lineno)
        else:
            vb.gets += 1
            rmw.note_get(st.prim, key, code, pos, locked, hold)
        if not locked:
            vb.unlocked += 1
        if level == FULL:
            rt.emit((OP_VALUE, rt.now(), me, st.prim, is_set, key, locked, code, pos))
    finally:
        if take:
            _give(vb)
    return result


def _key(vb: _ValueBooks, index: Any) -> Any:
    """An item's index as events and the rmw check see it: normalised to the array's length."""
    if type(index) is slice:
        return index.indices(vb.length)
    i = operator.index(index)
    return i + vb.length if i < 0 else i


def _rmw(st: ValueState, vb: _ValueBooks, me: int, key: Any, read: rmw.Read,
         code: CodeType | None, lineno: int) -> None:
    vb.rmws += 1
    site = (code, lineno)  # once per line, whichever instruction of it
    if site in rmw.reported:
        return
    rmw.reported.add(cast("tuple[CodeType, int]", site))
    rt.emit((OP_RMW, rt.now(), me, st.prim, key, read[0], read[1], read[2], *site))


def rmw_found(obj: Any, key: Any, read: rmw.Read, code: CodeType | None, pos: int) -> None:
    """The C setter found a read-modify-write (`rmw.check_set` said so) at ``code``, ``pos``."""
    st: ValueState = obj._ts_state
    lineno = line_of(code, -1 - pos) if code is not None else 0
    _rmw(st, st.ext, rt.ident(), key, read, code, lineno)


# -- the accessors (on the classes while the level is not off) -----------------------------------
def value_get(self: Any) -> Any:
    """``value``, as multiprocessing's getter, recorded."""
    return _access(self._ts_state, _getframe(1), 2, False, False, "value", None)


def value_set(self: Any, value: Any) -> None:
    """``value = ...``, as multiprocessing's setter, recorded."""
    _access(self._ts_state, _getframe(1), 2, True, False, "value", None, value)


def _getitem(self: Any, index: Any) -> Any:
    return _access(self._ts_state, _getframe(1), 2, False, True, index, None)


def _setitem(self: Any, index: Any, value: Any) -> None:
    _access(self._ts_state, _getframe(1), 2, True, True, index, None, value)


def _iter(self: Any) -> Iterator[Any]:
    # The sequence protocol of the real wrapper: item after item, each under the lock.
    st = self._ts_state
    i = 0
    while True:
        try:
            item = _access(st, _getframe(1), 2, False, True, i, None)
        except IndexError:
            return
        yield item
        i += 1


def _reversed(self: Any) -> Iterator[Any]:
    st = self._ts_state
    for i in range(len(st.ext.obj) - 1, -1, -1):
        yield _access(st, _getframe(1), 2, False, True, i, None)


def _contains(self: Any, item: Any) -> bool:
    st = self._ts_state
    f = _getframe(1)
    for i in range(len(st.ext.obj)):
        x = _access(st, f, 2, False, True, i, None)
        if x is item or x == item:
            return True
    return False


def _enter(self: Any) -> Any:
    # ``with v:``: the lock's __enter__ on the user's behalf (the pure-Python twin's frames).
    return enter_for(self._lock, 2)


def _field(name: str) -> property:
    def get(self: Any) -> Any:
        return _access(self._ts_state, _getframe(1), 2, False, False, name, name)

    def put(self: Any, value: Any) -> None:
        _access(self._ts_state, _getframe(1), 2, True, False, name, name, value)

    return property(get, put)


# -- the classes -------------------------------------------------------------------------------
class _SyncBase(MpOriginal):
    """What every traced Value/Array shares (multiprocessing's class does the rest)."""

    __slots__ = ()
    _obj: Any
    _lock: Any

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The class is chosen again from the ctypes object in the child (the classes for ctypes
        # Structures are made on the fly and cannot be pickled by reference).
        assert_spawning(self._ts_raw)
        return (_rebuild_value, (self._obj, self._lock, info_of(self._ts_state)))


class TracedValue(_SyncBase, Synchronized):  # type: ignore[type-arg]
    """A traced ``multiprocessing.Value``: every get and set of ``.value`` is recorded."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = Synchronized


class TracedArray(_SyncBase, SynchronizedArray):  # type: ignore[type-arg]
    """A traced ``multiprocessing.Array``: every get and set of an item or slice is recorded."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = SynchronizedArray


class TracedCharArray(TracedArray, SynchronizedString):
    """A traced ``multiprocessing.Array('c', ...)``: items, and ``value``/``raw`` as a whole."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = SynchronizedString


_PURE_ENTER: dict[str, Any] = {} if NATIVE is not None else {"__enter__": _enter}
if NATIVE is not None:
    NATIVE.mp_configure({
        "value_get": value_get, "value_set": value_set, "item_get": _getitem,
        "item_set": _setitem, "rmw_found": rmw_found, "kind_value": K_VALUE,
    })
    _VALUE = property(NATIVE.mp_value_get, NATIVE.mp_value_set)
    _ITEMS: dict[str, Any] = NATIVE.mp_item_methods(_SyncBase)
else:
    _VALUE = property(value_get, value_set)
    _ITEMS = {"__getitem__": _getitem, "__setitem__": _setitem}
register_tracing({
    _SyncBase: _PURE_ENTER,
    TracedValue: {"value": _VALUE},
    TracedArray: {**_ITEMS, "__iter__": _iter, "__reversed__": _reversed,
                  "__contains__": _contains},
    TracedCharArray: {"value": _field("value"), "raw": _field("raw")},
})

_struct_classes: weakref.WeakKeyDictionary[type, type[_SyncBase]] = weakref.WeakKeyDictionary()


def traced_class(raw_cls: type) -> type[_SyncBase]:
    """The traced class for multiprocessing's wrapper class ``raw_cls``."""
    if raw_cls is Synchronized:
        return TracedValue
    if raw_cls is SynchronizedString:
        return TracedCharArray
    if raw_cls is SynchronizedArray:
        return TracedArray
    cls = _struct_classes.get(raw_cls)
    if cls is None:  # a Structure or Union: multiprocessing's class, one property per field
        body: dict[str, Any] = {"__slots__": (), "_ts_raw": raw_cls}
        cls = cast("type[_SyncBase]", type(f"Traced{raw_cls.__name__}", (_SyncBase, raw_cls),
                                           body))
        register_tracing({cls: {n: _field(n) for n in _field_names(raw_cls)}})
        _struct_classes[raw_cls] = cls
    return cls


def _field_names(raw_cls: type) -> list[str]:
    # multiprocessing's class for a Structure has one property per field (sharedctypes'
    # make_property), and nothing else of its own.
    return [n for n, v in vars(raw_cls).items() if isinstance(v, property)]


def _extra_stats(st: ValueState) -> dict[str, Any]:
    vb: _ValueBooks = st.ext
    return {"reads": vb.gets, "writes": vb.sets, "unlocked": vb.unlocked, "rmws": vb.rmws}


def _reset_books(st: ValueState) -> None:
    st.ext.reset()  # a forked child counts its own accesses


def _setup(value: Any, st: ValueState) -> None:
    """Books for a new state of ``value``."""
    st.ext = _ValueBooks(value, st)
    st.extra_stats = _extra_stats
    reset_in_fork_child(st, _reset_books)


def _bind(value: Any, st: ValueState) -> Any:
    value._ts_state = st
    value._ts_books = st.ext
    _users.add(value)
    return value


def _new(obj: Any, lock: Any, ctx: Any) -> Any:
    """A traced wrapper of the ctypes object ``obj`` over ``lock``, of the class multiprocessing
    would choose (``sharedctypes.synchronized``'s, its class cache included), built by its own
    ``__init__``."""
    raw_cls = type(sharedctypes.synchronized(obj, lock, ctx=ctx))
    cls = traced_class(raw_cls)
    value = cls.__new__(cls)
    raw_cls.__init__(value, obj, lock, ctx)
    return value


def new_value(obj: Any, lock: Any, ctx: Any, kind: str, name: str | None,
              site: tuple[CodeType | None, int], extra: dict[str, Any]) -> Any:
    """A new traced Value or Array of ``obj`` (a raw shared ctypes object) over ``lock``."""
    value = _new(obj, lock, ctx)
    st = new_state(ValueState, weakref.proxy(value), kind, name, site, extra)
    _setup(value, st)
    return _bind(value, st)


def _rebuild_value(obj: Any, lock: Any, info: Any) -> Any:
    """Unpickling in a child (see `base`): the same Value, under the same id."""
    value = _new(obj, lock, None)
    prim, kind, name, extra = info
    st = attach_state(weakref.proxy(value), prim, kind, name, extra,
                      lambda st: _setup(value, cast(ValueState, st)), ValueState)
    return _bind(value, cast(ValueState, st))


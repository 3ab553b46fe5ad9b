"""What the traced multiprocessing primitives share: multiprocessing's own classes, subclassed;
the level switch; one identity in every process.

Design note.

Classes. Each traced primitive is an instance of a subclass of multiprocessing's own class
(``multiprocessing.synchronize.Lock``..., ``multiprocessing.sharedctypes.Synchronized``...),
with `MpOriginal` as a mixin: multiprocessing's code does all the work, ``isinstance`` holds,
and importing them imports no wrapt. Each class bears its original's ``__name__`` (its
``__qualname__`` is its own, ``TracedMpLock``...), so that the messages of errors that name the
type (``len()``, subscripts, missing attributes, multiprocessing's pickling check) and the reprs
are the original's. Each object has two more attributes: ``_ts_state``, its per-kind
`PrimState` (what the detectors, snapshots and statistics read; its ``raw`` is a weak proxy to
the object), and ``_ts_books``, the books the C hot paths write (a lock's `MpLockBooks`, a
value's books; None for the others). They are in the instance's dict, not in slots: on 3.13 a
class with slots of its own has no inline attribute values, and multiprocessing's own methods
(``self._semlock``, ``self.acquire``, ``self._obj``...) read theirs a third slower (measured:
``v.value`` 1.6x raw at level off with two slots, 1.0x without); the C paths read them with
one generic attribute lookup.

Levels. The recording methods are on the classes only while the level is not off (`set_tracing`,
called when the level changes; each module's table, `register_tracing`): at off, a traced object
*is* a multiprocessing object with two more slots, and its methods are multiprocessing's own.
multiprocessing also gives each lock, Value and Condition instance attributes: a lock's
``acquire``/``release`` are its SemLock's methods (``SemLock._make_methods``), a Value's and a
Condition's are their lock's. While tracing, a traced lock has none (its class's recording
methods are found instead: `tracing_lock`); at off it has multiprocessing's; the Values and
Conditions copy their lock's again whenever the lock's change (`bind_users`). So at off the
calls cost exactly what multiprocessing's cost.

Identity. A traced primitive gets its id (``"<pid>.<n>"``) once, where it is created, with a
``created`` event. A child process gets the object in one of two ways, and keeps the id in both:

* ``fork`` (the fork start method; Pool workers under it): the child's memory is a copy of the
  parent's, the object and its state included. Nothing is pickled and nothing is recorded at
  that moment; the child's log simply uses the id (its ``created`` is in the parent's log, the
  file of the session header's ``ppid``).
* pickling while spawning (spawn and forkserver: Process arguments, Pool initializer
  arguments): each class's ``__reduce_ex__`` first asks multiprocessing whether it is spawning
  (`assert_spawning`, which raises multiprocessing's own RuntimeError naming the original's
  class: the traced object fails exactly where the real one does), then returns a rebuild
  function with multiprocessing's own state of the object (its ``__getstate__``) and ours: the
  id, kind, name, ``created`` fields and kind-specific shared memory. In the child,
  `attach_state` registers the rebuilt object under the same id and records ``attached`` (not
  ``created``). If this process already has a live state for that id (the object arrived
  twice), that state is reused, so one process keeps one set of books per primitive.

Local books, shared truth. Each process keeps its own books (owner ident, depth, counters,
permits held per thread): they describe this process's threads. What other processes must see
(who holds a lock, why a barrier broke) lives in shared memory next to the real object
(`owner`, the barrier's record). After ``fork`` the child's copy of the books describes the
parent's threads, which hold nothing in the child (a multiprocessing lock held by the parent is
held by the parent *process*): `_reset_after_fork` clears them.
"""

from __future__ import annotations

import multiprocessing
import os
import weakref
from collections.abc import Callable
from types import CodeType
from typing import Any, ClassVar, TypeVar, cast

from .._core import registry as _registry
from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.state import PrimState, Statistics
from .._threading.common import install_methods

T = TypeVar("T")
S = TypeVar("S", bound=PrimState)


def real_context(ctx: Any) -> Any:
    """The concrete multiprocessing context for ``ctx`` (None: multiprocessing's default),
    resolved the way ``BaseContext`` methods do (``ctx.get_context()``)."""
    if ctx is None:
        ctx = multiprocessing.get_context()
    return ctx.get_context()


def start_method(ctx: Any) -> str | None:
    try:
        return ctx.get_start_method()  # type: ignore[no-any-return]
    except Exception:  # pragma: no cover - a context-like object of the user's
        return None


def untraced(factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)`` with the guard on: the Locks, Semaphores and Conditions
    that multiprocessing builds inside it (through ``ctx.Semaphore()``..., patched or not) are
    raw."""
    guard = rt.guard
    was = getattr(guard, "on", False)
    guard.on = True
    try:
        return factory(*args, **kwargs)
    finally:
        guard.on = was


def given_args(block: Any, timeout: Any, rest: tuple[Any, ...]) -> tuple[Any, ...]:
    """The positional arguments of an ``acquire(block=True, timeout=None, *rest)`` call as the
    caller gave them (defaults at the end dropped), to hand an unusual call to the real
    ``acquire`` so that it raises its own error."""
    if rest:
        return (block, timeout, *rest)
    if timeout is not None:
        return (block, timeout)
    return () if block is True else (block,)


# -- the level switch -----------------------------------------------------------------------
_on = rt.level != rt.OFF
_tables: list[dict[type, dict[str, Any]]] = []
_locks: weakref.WeakSet[Any] = weakref.WeakSet()
"""The traced locks of this process (their instance attributes follow the level)."""
_users: weakref.WeakSet[Any] = weakref.WeakSet()
"""The Values, Arrays and Conditions of this process (they copy their lock's methods)."""


def tracing() -> bool:
    """Whether the recording methods are on (the level is not off)."""
    return _on


def register_tracing(table: dict[type, dict[str, Any]]) -> None:
    """A module's recording methods, per class: put on now if the level is not off, and from
    now on whenever `set_tracing` says so."""
    _tables.append(table)
    install_methods(table, _on)


def set_tracing(on: bool) -> None:
    """Put the recording methods on the traced classes (or take them off: level off), and the
    instance attributes multiprocessing gives its objects in the matching state."""
    global _on
    if on == _on:
        return  # (configure calls this at every change of settings)
    _on = on
    for table in _tables:
        install_methods(table, on)
    for lock in list(_locks):
        tracing_lock(lock, on)
    for obj in list(_users):
        bind_user(obj)


def tracing_lock(lock: Any, on: bool) -> None:
    """A traced lock's instance attributes: none while tracing (its class's methods are found),
    its SemLock's ``acquire``/``release`` (multiprocessing's own) at off."""
    if on:
        d = lock.__dict__
        d.pop("acquire", None)
        d.pop("release", None)
    else:
        lock.acquire = lock._semlock.acquire
        lock.release = lock._semlock.release


def bind_user(obj: Any) -> None:
    """A Value's or Condition's ``acquire``/``release``: its lock's, as multiprocessing sets
    them (again, after its lock's changed)."""
    lock = obj._lock
    obj.acquire = lock.acquire
    obj.release = lock.release


# -- the mixin --------------------------------------------------------------------------------
class MpOriginal:
    """Mixin of the traced subclasses of multiprocessing's classes: what they have at every
    level. ``_ts_raw`` is multiprocessing's class. Not for direct use."""

    __slots__ = ()  # (the two attributes are in the instance's dict: see the note)
    _ts_raw: ClassVar[type]
    _ts_state: Any
    _ts_books: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The original's name (its qualified name stays ours: pickling finds the class by
        # it): error messages that name the type ("object of type 'Synchronized' has no
        # len()"), reprs and multiprocessing's own checks read as for the original.
        super().__init_subclass__(**kwargs)
        raw = cls.__dict__.get("_ts_raw")
        if raw is not None:
            cls.__name__ = raw.__name__

    def statistics(self) -> Statistics:
        """A snapshot of this primitive's counters (as seen by this process)."""
        return self._ts_state.statistics()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        # The original's repr, with the original's class name, and our id before its closing
        # bracket: "<Lock(owner=None) traced=1.2>", "<Synchronized wrapper for c_int(0)
        # traced=1.3>".
        raw = self._ts_raw
        r: str = cast(Any, raw).__repr__(self)
        cls = type(self)
        for mine, theirs in ((f"<{cls.__module__}.{cls.__qualname__}",
                              f"<{raw.__module__}.{raw.__qualname__}"),
                             (f"<{cls.__qualname__}", f"<{raw.__qualname__}"),
                             (f"<{cls.__name__}", f"<{raw.__name__}")):
            if r.startswith(mine):
                r = theirs + r[len(mine):]
                break
        st = getattr(self, "_ts_state", None)
        if st is None:  # pragma: no cover - not made by tracedsync
            return r
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        return r[:-1] + extra + r[-1:] if r.endswith(">") else r + extra

    def __del__(self) -> None:
        # The stats event, while this object can still be read (its state's weak proxy to it
        # is cleared before the state itself goes).
        try:
            self._ts_state.report()
        except Exception:  # pragma: no cover - interpreter shutdown, or never set up
            pass


class _Named:
    """Stands for an original's class in `assert_spawning`'s message."""


_named: dict[type, Any] = {}


def assert_spawning(raw_cls: type) -> None:
    """multiprocessing's own check that the object is being pickled to spawn a process: outside
    spawning it raises multiprocessing's RuntimeError, naming the original's class."""
    from multiprocessing.context import assert_spawning as check

    stand_in = _named.get(raw_cls)
    if stand_in is None:
        stand_in = _named[raw_cls] = type(raw_cls.__name__, (_Named,), {})()
    check(stand_in)


# -- fork -------------------------------------------------------------------------------------
_forked_reset: weakref.WeakKeyDictionary[PrimState, Callable[[Any], None]] = (
    weakref.WeakKeyDictionary()
)


def _nothing(st: Any) -> None:
    return None


def reset_in_fork_child(st: S, reset: Callable[[S], None] = _nothing) -> None:
    """In every child forked from now on, zero the counters of ``st`` (each process counts its
    own: summing the files gives the totals) and call ``reset(st)`` for its kind's own books
    (see "Local books" above)."""
    _forked_reset[st] = reset


def _reset_after_fork() -> None:
    for st, reset in list(_forked_reset.items()):
        st.reset_counters()
        reset(st)


os.register_at_fork(after_in_child=_reset_after_fork)


# -- registration ---------------------------------------------------------------------------------
Info = tuple[str, str, str | None, "dict[str, Any] | None"]
"""What a pickle carries of a primitive's identity: ``(prim, kind, name, extra)``."""


def info_of(st: PrimState) -> Info:
    """The identity of ``st`` to send to a child (see "Identity")."""
    return (st.prim, st.kind, st.name, _extras.get(st))


def attach_state(
    raw: Any,
    prim: str,
    kind: str,
    name: str | None,
    extra: dict[str, Any] | None,
    setup: Callable[[PrimState], None],
    cls: type[PrimState] | None = None,
) -> PrimState:
    """The state of primitive ``prim`` arriving in this process by pickling (see the module
    note): the live one if this process has it, else a new one (of class ``cls``, by default
    the kind's) registered under ``prim``, prepared by ``setup`` and announced by an
    ``attached`` event."""
    live: PrimState | None = _registry.state_of(prim)
    if live is not None and live.kind == kind:
        return live
    from .._core.state import state_class

    st = (cls or state_class(kind))(raw, prim, kind, name)
    _extras[st] = extra
    reset_in_fork_child(st)
    setup(st)
    _registry.adopt(st)
    if rt.level != rt.OFF:
        fields: dict[str, Any] = {"prim": prim, "kind": kind, "name": name}
        if extra:
            fields.update(extra)
        rt.emit((OP_GENERIC, rt.now(), rt.ident(), "attached", fields, None, 0))
    return st


_extras: weakref.WeakKeyDictionary[PrimState, dict[str, Any] | None] = (
    weakref.WeakKeyDictionary()
)


def new_state(
    cls: type[S], raw: Any, kind: str, name: str | None, site: tuple[CodeType | None, int],
    extra: dict[str, Any] | None,
) -> S:
    """A new id and state for ``raw``, with its ``created`` event (`_registry.new_state`); the
    ``extra`` fields are kept to be repeated by ``attached`` events in children."""
    st = _registry.new_state(cls, raw, kind, name, site[0], site[1], extra)
    _extras[st] = extra
    reset_in_fork_child(st)
    return st


def get_state(obj: Any) -> Any:
    """The state of a traced multiprocessing primitive (its kind's `PrimState`)."""
    return obj._ts_state

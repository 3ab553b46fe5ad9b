"""What the traced multiprocessing proxies share: one identity in every process.

Design note.

Identity. A traced primitive gets its id (``"<pid>.<n>"``) once, where it is created, with a
``created`` event. A child process gets the object in one of two ways, and keeps the id in both:

* ``fork`` (the fork start method; Pool workers under it): the child's memory is a copy of the
  parent's, the proxy and its `PrimState` included. Nothing is pickled and nothing is recorded
  at that moment; the child's log simply uses the id (its ``created`` is in the parent's log,
  the file of the session header's ``ppid``).
* pickling while spawning (spawn and forkserver: Process arguments, Pool initializer
  arguments): a proxy's ``__reduce_ex__`` returns ``(rebuild, (cls, raw, prim, kind, name,
  extra, shared))``. Pickling ``raw`` is multiprocessing's own reduction of the real object,
  which refuses outside spawning with its own RuntimeError ("... objects should only be shared
  between processes through inheritance"): the traced object fails exactly where the real one
  does. In the child, `attach_state` registers the unpickled real object under the same id and
  records ``attached`` (not ``created``). If this process already has a live state for that
  id (the object arrived twice), that state is reused, so one process keeps one set of books
  per primitive.

Local books, shared truth. Each process keeps its own books (owner ident, depth, counters,
permits held per thread): they describe this process's threads. What other processes must see
(who holds a lock, why a barrier broke) lives in shared memory next to the real object
(`_mp_owner`, `_mp_barrier`). After ``fork`` the child's copy of the books describes the
parent's threads, which hold nothing in the child (a multiprocessing lock held by the parent is
held by the parent *process*): `_reset_after_fork` clears them.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import weakref
from collections.abc import Callable
from types import CodeType
from typing import Any, TypeVar

from .._core import registry as _registry
from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.state import PrimState, state_class
from .._threading.proxy import StateProxy, get_state

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
def attach_state(
    raw: Any,
    prim: str,
    kind: str,
    name: str | None,
    extra: dict[str, Any] | None,
    setup: Callable[[PrimState], None],
) -> PrimState:
    """The state of primitive ``prim`` arriving in this process by pickling (see the module
    note): the live one if this process has it, else a new one registered under ``prim``,
    prepared by ``setup`` and announced by an ``attached`` event."""
    live: PrimState | None = _registry.state_of(prim)
    if live is not None and live.kind == kind:
        return live
    st = state_class(kind)(raw, prim, kind, name)
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




# -- the proxy base -------------------------------------------------------------------------------
class MpProxy(StateProxy):
    """Common base of the traced multiprocessing proxies. Not for direct use.

    Built from a real object and its state; pickles as described in the module note.
    """

    __slots__ = ()

    def __init__(self, raw: Any, st: PrimState) -> None:
        super().__init__(raw)
        self._self_state = st

    def __repr__(self) -> str:
        # The original's repr with our id before its closing bracket:
        # "<Lock(owner=None) traced=1.2>", "<Synchronized wrapper for c_int(0) traced=1.3>".
        st = get_state(self)
        r = repr(self.__wrapped__)
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        return r[:-1] + extra + r[-1:] if r.endswith(">") else r + extra

    __str__ = __repr__  # as for the real objects (multiprocessing's reprs use %s of their lock)

    # Copying does what it does to the real object (multiprocessing's objects refuse it).
    def __copy__(self) -> Any:
        return copy.copy(self.__wrapped__)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(self.__wrapped__, memo)

    # Pickling: see the module note.
    def _shared(self) -> Any:
        """Kind-specific data to send to a child with the real object (shared memory)."""
        return None

    def __reduce_ex__(self, protocol: Any) -> Any:
        st = get_state(self)
        return (_rebuild, (type(self), self.__wrapped__, st.prim, st.kind, st.name,
                           _extras.get(st), self._shared()))

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    @classmethod
    def _setup(cls, st: Any, shared: Any) -> None:
        """Prepare a state for the real object (in the creating process, or in a child that
        received it: ``shared`` is then what `_shared` sent)."""



def _rebuild(
    cls: type[MpProxy],
    raw: Any,
    prim: str,
    kind: str,
    name: str | None,
    extra: dict[str, Any] | None,
    shared: Any,
) -> MpProxy:
    """Unpickling in a child: the same primitive, under the same id."""
    st = attach_state(raw, prim, kind, name, extra, lambda st: cls._setup(st, shared))
    return cls(raw, st)

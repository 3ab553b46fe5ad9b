"""Primitive ids, ``created`` events, and the weak table of live primitives.

Ids are ``"<pid>.<n>"``: unique across the processes of a run without any coordination, and
stable for the life of the primitive (a primitive inherited through ``fork`` keeps its id).
"""

from __future__ import annotations

import itertools
import os
import weakref
from types import CodeType
from typing import Any, TypeVar

from . import runtime as rt
from .ops import OP_CREATED
from .sites import user_site
from .state import PrimState

S = TypeVar("S", bound=PrimState)

_counter = itertools.count(1)
_live: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
"""prim -> its state (a `PrimState`, or a native lock, its own state)."""


def new_state(
    cls: type[S],
    raw: Any,
    kind: str,
    name: str | None,
    code: CodeType | None,
    lineno: int,
    extra: dict[str, Any] | None = None,
) -> S:
    """Give ``raw`` an id and a state of class ``cls``, and record its creation."""
    prim = f"{os.getpid()}.{next(_counter)}"
    st = cls(raw, prim, kind, name)
    _live[prim] = st
    if rt.level != rt.OFF:
        rt.emit((OP_CREATED, rt.now(), rt.ident(), prim, kind, name, code, lineno, extra))
    return st


def new_native(
    lock: Any, kind: str, name: str | None, site: tuple[CodeType | None, int] | None
) -> tuple[int, int, str]:
    """Register a native lock (its own state) and record its creation; returns its id as
    ``(pid, n, "<pid>.<n>")``. ``site`` is where it was made (None: the innermost user frame)."""
    pid = os.getpid()
    n = next(_counter)
    prim = f"{pid}.{n}"
    _live[prim] = lock
    if rt.level != rt.OFF:
        code, lineno = site if site is not None else user_site()
        rt.emit((OP_CREATED, rt.now(), rt.ident(), prim, kind, name, code, lineno, None))
    return pid, n, prim


def adopt(st: PrimState) -> None:
    """Register ``st``, made for a primitive that arrived from another process under its
    existing id."""
    _live[st.prim] = st


def state_of(prim: str) -> Any:
    """The state of the live primitive ``prim`` of this process, if there is one."""
    return _live.get(prim)


def live_states() -> list[Any]:
    """The states of the traced primitives that still exist in this process."""
    return list(_live.values())


def report_all() -> None:
    """Record the counters of every live primitive (at exit)."""
    for st in live_states():
        st.report()

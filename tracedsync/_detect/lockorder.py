"""Lock-order checking online (``lock_order=True``): a ``lock_order`` event when an acquisition
closes a cycle in the graph of "B was taken while A was held" edges.

Design note.

* Opt-in, so free when off. The uncontended acquire may run in C (_speedups.c) and never calls
  Python, so it cannot tell us when a thread's depth goes 0 → 1. Instead of a flag tested on
  every acquire, switching ``lock_order`` on replaces the traced lock classes' ``acquire``,
  ``__enter__``, ``release``, ``__exit__``, ``_release_save`` and ``_acquire_restore`` with the
  wrappers below, which call the methods they replaced (C or pure Python, whichever was
  installed) and then update the caller's held list; switching it off puts the originals back.
  With the option off, the classes are exactly what _locks.py made them: no cost, no change.
  Class attributes are swapped under the GIL; a call already running finishes with the method
  it started with, so a lock taken just before the switch may be missing from a held list (it
  only means an edge not seen).
* Held lists. ``_held[ident]`` is the list of ``(state, code, pos)`` a thread holds, in the order
  it took them (``pos`` encodes the call's bytecode offset as in _sites.py). Only the owner
  appends to its list; a release removes the entry from the list of the thread our books name
  as owner (a plain Lock may be released by another thread). Single list operations, atomic
  under the GIL.
* The graph. ``_edges[a][b]`` = where the edge a → b was first seen (held site of a, site of b,
  native tid). Reading it is lock-free (dict reads under the GIL); a *new* edge (rare: once per
  pair of locks) is added under ``_lock``, a raw lock held only for dict operations and the
  search for a path b → ... → a, never while calling traced code, so it cannot deadlock. That
  path, if it exists, is the reverse order: a ``lock_order`` event is recorded, once per pair of
  sites (the new edge's sites, and the reverse path's), however many lock instances repeat it.
* What counts. Blocking acquires (with or without a timeout) that succeed, and the re-acquire at
  the end of a condition wait (holding B while waiting on a condition over A makes an edge
  B → A: the notifier that takes A then B deadlocks with it). Tries (``blocking=False`` or
  ``timeout=0``) cannot wait, so they add no edge into the lock they take (lockdep's rule for
  trylock; but the lock is held, and later edges start from it). Re-entrant acquires
  (depth > 1) add nothing.
* Bounds. The graph is per lock instance and is never pruned; past ``_MAX_EDGES`` edges no new
  edge is added (reported once on stderr).
"""

from __future__ import annotations

import _thread
import os
import sys
from collections import deque
from types import CodeType
from typing import Any

from .._core import runtime as rt
from .._core.diagnostics import report
from .._core.ops import OP_GENERIC
from .._core.sites import format_stack, line_of, user_frame
from .._core.state import LockBooks, is_lock_state
from .._core.waits import native_id
from .._record.config import Settings
from .._threading import locks as _locks

_getframe = sys._getframe
_get_state = _locks.lock_state
_MAX_EDGES = 200_000

Entry = tuple[LockBooks, CodeType | None, int]
"""A held lock: its state, and the call site that took it (code, encoded position)."""
EdgeInfo = tuple[CodeType | None, int, CodeType | None, int, int, str | None, str | None]
"""Where a → b was first seen: a's site, b's site, native tid, a's name, b's name."""

_held: dict[int, list[Entry]] = {}
_edges: dict[str, dict[str, EdgeInfo]] = {}
_n_edges = 0
_lock = _thread.allocate_lock()
_reported: set[tuple[Any, ...]] = set()
_full_reported = False
_enabled = False


# -- the held lists and the graph -------------------------------------------------------------
def _site(code: CodeType | None, pos: int) -> str | None:
    if code is None:
        return None
    line = pos if pos >= 0 else line_of(code, -pos - 1)
    return f"{code.co_filename}:{line}"


def _took(st: LockBooks, frame: Any, edges: bool) -> None:
    """The caller now holds ``st`` at depth 1: add edges from what it holds, then hold it."""
    if not is_lock_state(st) or st.depth != 1 or not rt.level:
        return
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    if frame is not None:
        entry: Entry = (st, frame.f_code, -1 - frame.f_lasti)
    else:
        entry = (st, None, 0)
    held = _held.get(me)
    if held is None:
        held = _held[me] = []
    if edges:
        b = st.prim
        for h in held:
            hs = h[0]
            if hs is st:
                continue
            succ = _edges.get(hs.prim)
            if succ is None or b not in succ:
                _new_edge(h, entry, me)
    held.append(entry)


def _dropped(st: LockBooks, owner: int) -> None:
    """``owner`` no longer holds ``st``."""
    held = _held.get(owner)
    if not held:
        return
    for i in range(len(held) - 1, -1, -1):
        if held[i][0] is st:
            try:
                del held[i]
            except IndexError:  # pragma: no cover - changed under us by a racing release
                pass
            return


def _new_edge(h: Entry, entry: Entry, me: int) -> None:
    global _n_edges, _full_reported
    a_st, a_code, a_pos = h
    b_st, b_code, b_pos = entry
    a, b = a_st.prim, b_st.prim
    with _lock:
        succ = _edges.get(a)
        if succ is not None and b in succ:
            return
        if _n_edges >= _MAX_EDGES:
            if not _full_reported:
                _full_reported = True
                report(f"lock-order graph full ({_MAX_EDGES} edges): no new edges are checked")
            return
        path = _path(b, a)
        info: EdgeInfo = (a_code, a_pos, b_code, b_pos, native_id(me), a_st.name, b_st.name)
        if succ is None:
            succ = _edges[a] = {}
        succ[b] = info
        _n_edges += 1
        if path is None:
            return
        new_sites = (_site(a_code, a_pos), _site(b_code, b_pos))
        reverse = [(x, y, _edges[x][y]) for x, y in path]
        rev_sites = tuple((_site(i[0], i[1]), _site(i[2], i[3])) for _, _, i in reverse)
        key = (new_sites, rev_sites)
        if key in _reported:
            return
        _reported.add(key)
    _violation(me, h, entry, reverse)


def _path(src: str, dst: str) -> list[tuple[str, str]] | None:
    """Edges of a shortest path src → ... → dst in the graph, or None (called under _lock)."""
    if src == dst:
        return []
    prev: dict[str, str] = {}
    queue: deque[str] = deque([src])
    while queue:
        x = queue.popleft()
        for y in _edges.get(x, ()):
            if y in prev or y == src:
                continue
            prev[y] = x
            if y == dst:
                out = []
                while y != src:
                    out.append((prev[y], y))
                    y = prev[y]
                out.reverse()
                return out
            queue.append(y)
    return None


def _violation(me: int, h: Entry, entry: Entry,
               reverse: list[tuple[str, str, EdgeInfo]]) -> None:
    a_st, a_code, a_pos = h
    b_st, b_code, b_pos = entry
    fields = {
        "prim": b_st.prim,
        "name": b_st.name,
        "held": a_st.prim,
        "held_name": a_st.name,
        "held_site": _site(a_code, a_pos),
        "reverse": [
            {"from": x, "from_name": i[5], "to": y, "to_name": i[6], "held_site": _site(i[0], i[1]),
             "site": _site(i[2], i[3]), "tid": i[4]}
            for x, y, i in reverse
        ],
        "stack": format_stack(_getframe(1)),
    }
    line = 0
    if b_code is not None:
        line = b_pos if b_pos >= 0 else line_of(b_code, -b_pos - 1)
    rt.emit((OP_GENERIC, rt.now(), me, "lock_order", fields, b_code, line))


def acquired_at(ident: int, st: LockBooks) -> str | None:
    """Where ``ident`` took ``st``, if lock-order checking saw it (else None)."""
    for h in reversed(_held.get(ident) or ()):
        if h[0] is st:
            return _site(h[1], h[2])
    return None


def _may_wait(blocking: Any, timeout: Any) -> bool:
    """Whether an acquire with these arguments could have waited: not a try (``blocking``
    false, or ``timeout`` 0). A try cannot deadlock, so it adds no edge into what it takes."""
    return bool(blocking) and not (type(timeout) in (int, float) and timeout == 0)


# -- the wrappers ------------------------------------------------------------------------------
_saved: dict[tuple[type, str], Any] = {}
_INHERITED = object()


def _make_wrappers() -> dict[tuple[type, str], Any]:
    # The pure-Python twin's classes too (it is imported here if it was not: with the native
    # recorder, it serves the real locks that get wrapped).
    twin = _locks._twin()
    base = twin._TracedLockBase
    base_acquire = vars(base)["acquire"]
    base_enter = vars(base)["__enter__"]
    base_release = vars(base)["release"]

    def acquire(self: Any, blocking: bool = True, timeout: float = -1, *,
                _depth: int = 1) -> bool:
        if blocking is True and timeout == -1:
            ok = base_enter(self, _depth + 1)
        else:
            ok = base_acquire(self, blocking, timeout, _depth=_depth + 1)
        if ok:
            _took(_get_state(self), _getframe(_depth), _may_wait(blocking, timeout))
        return ok  # type: ignore[no-any-return]

    def enter(self: Any, _depth: int = 1) -> bool:
        ok = base_enter(self, _depth + 1)
        if ok:
            _took(_get_state(self), _getframe(_depth), True)
        return ok  # type: ignore[no-any-return]

    def release(self: Any) -> None:
        st = _get_state(self)
        owner = st.owner
        depth = st.depth
        base_release(self)
        if depth == 1 and owner is not None:
            _dropped(st, owner)

    def exit_(self: Any, *exc_info: object) -> None:
        release(self)

    acquire.__doc__ = base_acquire.__doc__
    release.__doc__ = base_release.__doc__
    wrappers: dict[tuple[type, str], Any] = {
        (base, "acquire"): acquire,
        (base, "__enter__"): enter,
        (base, "release"): release,
        (base, "__exit__"): exit_,
    }
    for cls in (twin.PyTracedLock, twin.PyTracedRLock):
        wrappers[(cls, "_release_save")] = _wrap_release_save(vars(cls)["_release_save"])
        wrappers[(cls, "_acquire_restore")] = _wrap_acquire_restore(vars(cls)["_acquire_restore"])
    for native_cls in _locks.NATIVE_LOCKS:
        wrappers.update(_native_wrappers(native_cls))
    return wrappers


def _native_wrappers(cls: Any) -> dict[tuple[type, str], Any]:
    """The same for a native lock class (its own state; it finds the user's line itself, so
    the wrappers pass no frame depth)."""
    base_acquire = cls.acquire
    base_enter = cls.__enter__
    base_release = cls.release

    def acquire(self: Any, *args: Any, **kwargs: Any) -> bool:
        ok = base_acquire(self, *args, **kwargs)
        if ok:
            blocking = args[0] if args else kwargs.get("blocking", True)
            timeout = args[1] if len(args) > 1 else kwargs.get("timeout", -1)
            _took(self, user_frame(), _may_wait(blocking, timeout))
        return ok  # type: ignore[no-any-return]

    def enter(self: Any, *args: Any, **kwargs: Any) -> bool:
        ok = base_enter(self, *args, **kwargs)
        if ok:
            _took(self, user_frame(), True)
        return ok  # type: ignore[no-any-return]

    def release(self: Any) -> None:
        owner = self.owner
        depth = self.depth
        base_release(self)
        if depth == 1 and owner is not None:
            _dropped(self, owner)

    def exit_(self: Any, *exc_info: object) -> None:
        release(self)

    acquire.__doc__ = base_acquire.__doc__
    release.__doc__ = base_release.__doc__
    return {
        (cls, "acquire"): acquire,
        (cls, "__enter__"): enter,
        (cls, "release"): release,
        (cls, "__exit__"): exit_,
        (cls, "_release_save"): _wrap_release_save(cls._release_save),
        (cls, "_acquire_restore"): _wrap_acquire_restore(cls._acquire_restore),
    }


def _wrap_release_save(orig: Any) -> Any:
    def _release_save(self: Any) -> Any:
        st = _get_state(self)
        owner = st.owner
        state = orig(self)
        if owner is not None:
            _dropped(st, owner)
        return state

    return _release_save


def _wrap_acquire_restore(orig: Any) -> Any:
    def _acquire_restore(self: Any, state: Any) -> None:
        orig(self, state)
        _took(_get_state(self), user_frame(), True)

    return _acquire_restore


def set_enabled(on: bool) -> None:
    """Install (True) or remove (False) the wrappers; idempotent."""
    global _enabled
    if on == _enabled:
        return
    if on:
        wrappers = _make_wrappers()
        for (cls, name), fn in wrappers.items():
            _saved[(cls, name)] = vars(cls).get(name, _INHERITED)
            setattr(cls, name, fn)
    else:
        for (cls, name), orig in _saved.items():
            if orig is _INHERITED:
                delattr(cls, name)  # a native lock's method, inherited from its C base
            else:
                setattr(cls, name, orig)
        _saved.clear()
    _enabled = on


def enabled() -> bool:
    """Whether lock-order checking is on."""
    return _enabled


def reset() -> None:
    """Forget the graph and what was reported (the held lists stay: locks are still held)."""
    global _n_edges
    with _lock:
        _edges.clear()
        _reported.clear()
        _n_edges = 0


def apply_settings(settings: Settings) -> None:
    """Switch checking on or off as ``lock_order`` says."""
    set_enabled(settings.lock_order)


def _after_fork_child() -> None:
    global _lock
    _lock = _thread.allocate_lock()  # may have been held by a thread that is not here
    me = _thread.get_ident()
    mine = _held.get(me)
    _held.clear()
    if mine is not None:
        _held[me] = mine


os.register_at_fork(after_in_child=_after_fork_child)

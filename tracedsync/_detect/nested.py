"""Nested-monitor lockout: a thread blocks on a lock whose holder is waiting on a Condition.

Design note. Thread T1 holds lock M and waits on Condition C (whose own lock is another one):
``C.wait()`` releases C's lock, not M. A thread T2 that must take M before it can notify C
(``with m: with c: c.notify()``) blocks on M, and T1 waits for a notify that cannot come: the
classic nested-monitor lockout. No cycle of lock holders shows it (T1 holds M and waits for a
*notify*, which nobody owes it), so the deadlock check cannot see it; this module does, from
the same wait-for table (`tracedsync._core.waits`), at either of the two moments it forms:

* T2 registers a wait for a Lock/RLock whose owner T1 is registered as waiting on a Condition
  whose lock is not that one (`_lock_wait`);
* T1 registers its condition wait while some T2 is already registered as waiting for a lock T1
  holds (`_cond_wait`: a look at the few registered waits).

Either way a ``nested_monitor`` event names both threads, both sites, the lock, the condition,
and both stacks, once per pair of sites in a process, and is flushed at once if the recorder is
idle (the program may be about to hang). It is a fact, not yet a verdict: a third thread may
still notify C. `tracedsync analyze` says what it was from how T1's wait ended (never: a
lockout; by its timeout: a lockout that the timeout broke; by a notify: T2 was only held up).
Reads only (the books, the table), like the deadlock check; it never raises into the program.
Threads of this process only (a multiprocessing lock's holder may be elsewhere).
"""

from __future__ import annotations

import sys
from typing import Any

from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.sites import format_stack
from .._core.state import ConditionState, is_lock_state
from .._core.waits import WAITS, Wait, lock_waits_for, native_id, thread_name
from .._record.recorder import RECORDER
from .lockorder import acquired_at

_reported: set[tuple[Any, ...]] = set()


def on_wait(me: int, w: Wait) -> None:
    """`tracedsync._core.waits` calls this in every thread that registers a lock or condition
    wait (installed by `tracedsync._wiring`)."""
    try:
        if w.what == "cond_wait":
            _cond_wait(me, w)
        elif w.what in ("acquire", "restore"):
            _lock_wait(me, w)
    except Exception:  # a detector must never break the program
        pass


def _lock_wait(me: int, w: Wait) -> None:
    st = w.st
    if w.owners_fn is not None or not is_lock_state(st):
        return
    holder = st.owner
    if holder is None or holder == me:
        return
    hw = WAITS.get(holder)
    if _waits_on_other_condition(hw, st):
        _report(me, w, holder, hw)  # type: ignore[arg-type]


def _cond_wait(me: int, w: Wait) -> None:
    st = w.st
    own = st.lock_state if isinstance(st, ConditionState) else None
    for ident, other in lock_waits_for(me, own):  # (its lock held: only the few that matter)
        if _waits_on_other_condition(w, other.st):
            _report(ident, other, me, w)


def _waits_on_other_condition(hw: Wait | None, lock: Any) -> bool:
    return (hw is not None and hw.what == "cond_wait" and isinstance(hw.st, ConditionState)
            and hw.st.lock_state is not lock)


def _site(w: Wait) -> tuple[Any, int, str | None, str | None]:
    code, line = w.site()
    if code is None:
        return None, 0, None, None
    return code, line, f"{code.co_filename}:{line}", getattr(code, "co_qualname", code.co_name)


def _report(waiter: int, ww: Wait, holder: int, hw: Wait) -> None:
    code, line, site, _ = _site(ww)
    _, _, cond_site, cond_func = _site(hw)
    key = (site, cond_site)
    if key in _reported:
        return
    _reported.add(key)
    lock, cond = ww.st, hw.st
    assert isinstance(cond, ConditionState)
    frames = sys._current_frames()
    fields = {
        "prim": lock.prim, "name": lock.name, "kind": lock.kind,
        "thread": thread_name(waiter),
        "cond": cond.prim, "cond_name": cond.name,
        "cond_lock": None if cond.lock_state is None else cond.lock_state.prim,
        "holder": native_id(holder), "holder_thread": thread_name(holder),
        "holder_site": cond_site, "holder_func": cond_func,
        "held_site": acquired_at(holder, lock),  # type: ignore[arg-type]
        "timeout": hw.timeout,
        "stack": format_stack(frames.get(waiter)),
        "holder_stack": format_stack(frames.get(holder)),
    }
    rt.emit((OP_GENERIC, rt.now(), waiter, "nested_monitor", fields, code, line))
    me = rt.get_ident()
    mine = WAITS.get(me)
    RECORDER.try_flush()  # on disk now if the recorder is idle: the program may hang
    if mine is not None and WAITS.get(me) is not mine:
        WAITS[me] = mine  # a sink processor's traced lock replaced our entry (see deadlock)


def reset() -> None:
    """Forget what was reported (tests)."""
    _reported.clear()
